//! MTCNN alignment: parity with the reference (fixtures made by
//! `tools/make_mtcnn_fixtures.py`) and `facenet detect` / `facenet align` run as a user would.
//!
//! Tests that need the MTCNN weights skip (with a message) when they are not in
//! `$FACENET_HOME/mtcnn` (CI fetches them first with `facenet fetch-weights`). The photo-level
//! parity test also needs the sample photos of the `insightface` 2.1 wheel; it fetches them
//! into `$FACENET_HOME/testdata/` with `pip download` and skips when that is not possible.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use assert_cmd::cargo::CommandCargoExt;
use burn::tensor::{Device, Tensor, TensorData};
use facenet::align::boxes::iou;
use facenet::align::crop::{choose_face, crop_and_resize, margin_box};
use facenet::align::weights::{load_nets, weights_dir, weights_present};
use facenet::align::{DetectorConfig, Mtcnn};
use facenet::data::image_io::load_rgb;
use facenet::data::resample::{resize_area_f64, resize_area_u8};
use image::ImageEncoder;
use serde_json::Value;

mod common;
use common::{crc32, photos};

fn fixture(name: &str) -> Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mtcnn").join(name);
    serde_json::from_str(&fs::read_to_string(&p).unwrap()).unwrap()
}

fn weights() -> Option<PathBuf> {
    let d = weights_dir();
    if weights_present(&d) {
        Some(d)
    } else {
        eprintln!("SKIPPED: MTCNN weights not in {} (run `facenet fetch-weights`)", d.display());
        None
    }
}

/// The detector, computing as `align` and `detect` do: with the Winograd 3x3 kernel
/// (`FACENET_WINOGRAD=0` checks the im2col kernel instead).
fn detector() -> Option<&'static Mtcnn> {
    static M: OnceLock<Option<Mtcnn>> = OnceLock::new();
    M.get_or_init(|| {
        burn_flex::set_conv_winograd(std::env::var("FACENET_WINOGRAD").as_deref() != Ok("0"));
        let d = weights()?;
        Some(Mtcnn::new(load_nets(&d, &Device::flex()).unwrap(), DetectorConfig::default()))
    })
    .as_ref()
}

/// The dev script's deterministic test image: `(x*x*3 + y*7 + c*50 + x*y) % 256`.
fn image_pattern(h: usize, w: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(h * w * 3);
    for y in 0..h {
        for x in 0..w {
            for c in 0..3 {
                v.push(((x * x * 3 + y * 7 + c * 50 + x * y) % 256) as u8);
            }
        }
    }
    v
}

#[test]
fn resize_matches_opencv_inter_area() {
    let fx = fixture("resize.json");
    let img = image_pattern(44, 60);
    // the float64 crop: zeros(31, 29, 3) with [3:, 2:] = img[:28, :27]
    let mut crop = vec![0f64; 31 * 29 * 3];
    for y in 0..28 {
        for x in 0..27 {
            for c in 0..3 {
                crop[((y + 3) * 29 + x + 2) * 3 + c] = img[(y * 60 + x) * 3 + c] as f64;
            }
        }
    }
    let mut checked = 0;
    for case in fx["cases"].as_array().unwrap() {
        let dst: Vec<usize> = case["dst"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
        let (dh, dw) = (dst[0], dst[1]);
        if case["dtype"] == "u8" {
            let hex = case["out_hex"].as_str().unwrap();
            let want: Vec<u8> = (0..hex.len() / 2).map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap()).collect();
            let got = resize_area_u8(&img, 60, 44, 3, dw, dh);
            let diff = got.iter().zip(&want).filter(|(a, b)| a != b).count();
            assert_eq!(diff, 0, "u8 60x44 -> {dw}x{dh}: {diff} bytes differ from cv2");
        } else {
            let src: Vec<usize> = case["src_f64_rows_cols"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
            let (sh, sw) = (src[0], src[1]);
            let sub: Vec<f64> = (0..sh).flat_map(|y| crop[y * 29 * 3..(y * 29 + sw) * 3].to_vec()).collect();
            let got = resize_area_f64(&sub, sw, sh, 3, dw, dh);
            let want: Vec<f64> = case["out"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
            for (k, w) in want.iter().enumerate() {
                let g = got[k * 7];
                assert!((g - w).abs() < 1e-9 * w.abs().max(1.0), "f64 {sw}x{sh} -> {dw}x{dh} at {}: {g} vs {w}", k * 7);
            }
            let sum: f64 = got.iter().sum();
            assert!((sum - case["out_sum"].as_f64().unwrap()).abs() < 1e-6);
        }
        checked += 1;
    }
    assert_eq!(checked, 12);
}

/// `((i * 7919 + 13) % 256 - 127.5) / 128` over NHWC indices, as NCHW data.
fn pattern_nchw(n: usize, h: usize, w: usize) -> Tensor<4> {
    let mut data = vec![0f32; n * 3 * h * w];
    for b in 0..n {
        for y in 0..h {
            for x in 0..w {
                for c in 0..3 {
                    let i = (((b * h + y) * w + x) * 3 + c) as i64;
                    data[((b * 3 + c) * h + y) * w + x] = (((i * 7919 + 13) % 256) as f32 - 127.5) * 0.0078125;
                }
            }
        }
    }
    Tensor::from_data(TensorData::new(data, [n, 3, h, w]), &Device::flex())
}

fn flat(v: &Value) -> Vec<f32> {
    match v {
        Value::Array(a) => a.iter().flat_map(flat).collect(),
        Value::Number(n) => vec![n.as_f64().unwrap() as f32],
        _ => panic!("not numeric"),
    }
}

fn max_diff(got: Tensor<2>, want: &Value) -> f32 {
    let g = got.into_data().try_into_vec_as::<f32>().unwrap();
    let w = flat(want);
    assert_eq!(g.len(), w.len());
    g.iter().zip(&w).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max)
}

#[test]
fn nets_match_reference() {
    let Some(m) = detector() else { return };
    let fx = fixture("nets.json");
    let o = m.nets.pnet.forward(pattern_nchw(1, 40, 50));
    let [_, _, h, w] = o.prob.dims();
    let dp = max_diff(o.prob.reshape([h, w]), &fx["pnet"]["prob"]);
    let dr = max_diff(o.reg.reshape([4, h * w]), &fx["pnet"]["reg"]);
    println!("P-Net max |diff|: prob {dp:.2e}, reg {dr:.2e}");
    assert!(dp < 1e-4 && dr < 1e-4);
    let o = m.nets.rnet.forward(pattern_nchw(3, 24, 24));
    let (dp, dr) = (max_diff(o.prob.reshape([1, 3]), &fx["rnet"]["prob"]), max_diff(o.reg, &fx["rnet"]["reg"]));
    println!("R-Net max |diff|: prob {dp:.2e}, reg {dr:.2e}");
    assert!(dp < 1e-4 && dr < 1e-4);
    let o = m.nets.onet.forward(pattern_nchw(2, 48, 48));
    let dp = max_diff(o.prob.reshape([1, 2]), &fx["onet"]["prob"]);
    let dr = max_diff(o.reg, &fx["onet"]["reg"]);
    let dl = max_diff(o.points, &fx["onet"]["points"]);
    println!("O-Net max |diff|: prob {dp:.2e}, reg {dr:.2e}, points {dl:.2e}");
    assert!(dp < 1e-4 && dr < 1e-4 && dl < 1e-4);
}

#[test]
fn photos_match_reference() {
    let Some(m) = detector() else { return };
    let Some(dir) = photos() else { return };
    let fx = fixture("photos.json");
    for photo in fx["photos"].as_array().unwrap() {
        let name = photo["photo"].as_str().unwrap();
        let img = load_rgb(&dir.join(name)).unwrap();
        let faces = m.detect(&img);
        let want = photo["faces"].as_array().unwrap();
        // JPEGs are decoded by libjpeg (src/data/jpeg.rs), so their pixels are the reference's
        // too and every photo is held to the same tolerances
        let (mut worst_iou, mut worst_box, mut worst_mark, mut worst_prob) = (1.0f64, 0.0f64, 0.0f64, 0.0f64);
        for wf in want {
            let wb: Vec<f64> = flat(&wf["box"]).iter().map(|v| *v as f64).collect();
            let wb = [wb[0], wb[1], wb[2], wb[3]];
            let (best, i) = faces.iter().map(|f| iou(f.bbox, wb)).enumerate().map(|(i, v)| (v, i)).fold((0.0, usize::MAX), |a, b| {
                if b.0 > a.0 {
                    b
                } else {
                    a
                }
            });
            assert!(best >= 0.98, "{name}: reference face {wb:?} not found (best IoU {best:.3})");
            let f = &faces[i];
            worst_iou = worst_iou.min(best);
            worst_box = worst_box.max((0..4).map(|k| (f.bbox[k] - wb[k]).abs()).fold(0.0, f64::max));
            let wl = flat(&wf["landmarks"]);
            for k in 0..5 {
                let d = (f.landmarks[k][0] - wl[2 * k] as f64).hypot(f.landmarks[k][1] - wl[2 * k + 1] as f64);
                worst_mark = worst_mark.max(d);
            }
            worst_prob = worst_prob.max((f.prob - wf["prob"].as_f64().unwrap()).abs());
        }
        println!(
            "{name}: reference {} faces, ours {}; min IoU {worst_iou:.4}, max box corner diff {worst_box:.2} px, \
             max landmark diff {worst_mark:.2} px, max prob diff {worst_prob:.1e}",
            want.len(),
            faces.len()
        );
        assert!(worst_mark <= 1.5, "{name}: landmarks off by {worst_mark}");
        assert!(worst_prob <= 1e-3, "{name}: probability off by {worst_prob}");
        {
            assert!(worst_box <= 1.0, "{name}: box off by {worst_box}");
            assert_eq!(faces.len(), want.len(), "{name}: extra faces");
            // the reference's crop (align_dataset_mtcnn.py, --image_size 182 --margin 44)
            let stem = name.rsplit_once('.').unwrap().0;
            let entry = fx["align"].as_array().unwrap().iter().find(|e| e["output"] == format!("photos/{stem}.png")).unwrap();
            let boxes: Vec<_> = faces.iter().map(|f| f.bbox).collect();
            let Some(i) = choose_face(&boxes, img.width(), img.height()) else {
                assert!(entry["box"].as_array().unwrap().is_empty(), "{name}: the reference found a face");
                continue;
            };
            let bb = margin_box(boxes[i], 44.0, img.width(), img.height()).unwrap();
            let want_bb: Vec<u32> = entry["box"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
            assert_eq!(bb.to_vec(), want_bb, "{name}: crop box");
            let crop = crop_and_resize(&img, bb, 182);
            let mean: Vec<f64> = (0..3).map(|c| crop.pixels().map(|p| p.0[c] as f64).sum::<f64>() / (182.0 * 182.0)).collect();
            let want_mean = flat(&entry["mean_rgb"]);
            let dm = (0..3).map(|c| (mean[c] - want_mean[c] as f64).abs()).fold(0.0, f64::max);
            println!("{name}: crop box {bb:?} equal; mean RGB of the 182x182 crop within {dm:.3} levels");
            assert!(dm < 0.5, "{name}: crop pixels differ (mean {mean:?} vs {want_mean:?})");
        }
    }
}

fn facenet() -> Command {
    let mut c = Command::cargo_bin("facenet").unwrap();
    c.env("FACENET_NO_PROGRESS", "1");
    c
}

fn run_ok(c: &mut Command) -> (String, String) {
    let out = c.output().unwrap();
    let (so, se) = (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
    assert!(out.status.success(), "command failed: {c:?}\nstdout:\n{so}\nstderr:\n{se}");
    (so, se)
}

#[test]
fn detect_cli_json_and_table() {
    if weights().is_none() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let blank = d.path().join("blank.png");
    image::RgbImage::from_pixel(64, 48, image::Rgb([200, 200, 200])).save(&blank).unwrap();
    let mut images = vec![blank.clone()];
    if let Some(p) = photos() {
        images.push(p.join("Tom_Hanks_54745.png"));
    }
    let (out, _) = run_ok(facenet().arg("detect").arg("--json").args(&images));
    let lines: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), images.len());
    assert_eq!(lines[0]["image"], blank.display().to_string());
    assert_eq!(lines[0]["faces"].as_array().unwrap().len(), 0);
    assert!(out.lines().next().unwrap().starts_with("{\"image\":"), "image first: {out}");
    if images.len() > 1 {
        let f = &lines[1]["faces"][0];
        assert_eq!(f["box"].as_array().unwrap().len(), 4);
        assert_eq!(f["landmarks"].as_array().unwrap().len(), 5);
        assert!(f["prob"].as_f64().unwrap() > 0.9);
    }
    let (table, _) = run_ok(facenet().arg("detect").args(&images));
    assert!(table.contains("blank.png (64 x 48): 0 faces"), "{table}");
    // an unreadable file: reported, others still processed, exit status 1
    let bad = d.path().join("bad.jpg");
    fs::write(&bad, b"not an image").unwrap();
    let out = facenet().arg("detect").arg("--json").arg(&bad).arg(&blank).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let so = String::from_utf8_lossy(&out.stdout);
    assert_eq!(so.lines().count(), 2);
    assert!(so.lines().next().unwrap().contains("\"error\""));
}

/// A tiny PNG file whose header says 20000 x 20000 RGB (1.2 GB decoded).
fn huge_png() -> Vec<u8> {
    let mut png = Vec::new();
    image::codecs::png::PngEncoder::new(&mut png).write_image(&[0u8; 12], 2, 2, image::ExtendedColorType::Rgb8).unwrap();
    png[16..20].copy_from_slice(&20000u32.to_be_bytes());
    png[20..24].copy_from_slice(&20000u32.to_be_bytes());
    let crc = crc32(&png[12..29]);
    png[29..33].copy_from_slice(&crc.to_be_bytes());
    png
}

/// The side of [`write_huge_png`]'s images: 1.2 GB as RGB, over the 0.5 GB decoder limit.
const HUGE: u32 = 20000;
const HUGE_BACKGROUND: [u8; 3] = [118, 124, 131];

/// The pixel at `(x, y)` of [`write_huge_png`]'s image.
fn huge_pixel(face: Option<&image::RgbImage>, at: (u32, u32), x: u32, y: u32) -> [u8; 3] {
    match face {
        Some(f) if x >= at.0 && y >= at.1 && x - at.0 < f.width() && y - at.1 < f.height() => f.get_pixel(x - at.0, y - at.1).0,
        _ => HUGE_BACKGROUND,
    }
}

/// Writes a `HUGE x HUGE` RGB PNG, a uniform grey with `face` pasted at `at`: row filter
/// "up" makes the grey rows zeros, so the file is about a megabyte.
fn write_huge_png(path: &Path, face: Option<&image::RgbImage>, at: (u32, u32)) {
    let mut enc = png::Encoder::new(std::io::BufWriter::new(fs::File::create(path).unwrap()), HUGE, HUGE);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    enc.set_compression(png::Compression::Fast);
    enc.set_filter(png::Filter::Up);
    let mut writer = enc.write_header().unwrap();
    let mut stream = writer.stream_writer().unwrap();
    let mut row = vec![0u8; HUGE as usize * 3];
    for y in 0..HUGE {
        for (x, px) in row.chunks_exact_mut(3).enumerate() {
            px.copy_from_slice(&huge_pixel(face, at, x as u32, y));
        }
        std::io::Write::write_all(&mut stream, &row).unwrap();
    }
    stream.finish().unwrap();
}

/// A BMP whose header says `HUGE x HUGE` (no pixel data).
fn huge_bmp() -> Vec<u8> {
    let mut bmp = Vec::new();
    image::RgbImage::new(2, 2).write_to(&mut std::io::Cursor::new(&mut bmp), image::ImageFormat::Bmp).unwrap();
    bmp[18..22].copy_from_slice(&(HUGE as i32).to_le_bytes());
    bmp[22..26].copy_from_slice(&(HUGE as i32).to_le_bytes());
    bmp
}

/// `facenet align` on 20000 x 20000 images (1.2 GB as RGB, over the decoder's limit): a PNG
/// is detected on a downscaled copy and cropped from the original, both decoded row by row;
/// a PNG without a face is "Unable to align"; other formats are refused with their size.
#[test]
fn align_cli_streams_huge_png() {
    let Some(m) = detector() else { return };
    let Some(p) = photos() else { return };
    let d = tempfile::tempdir().unwrap();
    let input = d.path().join("in");
    fs::create_dir_all(input.join("big")).unwrap();
    // the face 8x enlarged: about as big in the detector's 4096 x 4096 copy as in the photo
    let tom = image::open(p.join("Tom_Hanks_54745.png")).unwrap().to_rgb8();
    let face = image::imageops::resize(&tom, tom.width() * 8, tom.height() * 8, image::imageops::FilterType::Triangle);
    let at = (12345, 6789);
    let t = std::time::Instant::now();
    write_huge_png(&input.join("big/face.png"), Some(&face), at);
    write_huge_png(&input.join("big/blank.png"), None, at);
    fs::write(input.join("big/huge.bmp"), huge_bmp()).unwrap();
    println!("wrote two {HUGE} x {HUGE} PNGs in {:.1} s", t.elapsed().as_secs_f64());

    let out = d.path().join("out");
    let t = std::time::Instant::now();
    let (so, se) = run_ok(facenet().arg("align").arg(&input).arg(&out).args(["--image_size", "160", "--margin", "32"]));
    println!("{so}\n{se}\naligned in {:.1} s", t.elapsed().as_secs_f64());
    assert!(so.contains("Total number of images: 3"), "{so}");
    assert!(so.contains("Number of successfully aligned images: 1"), "{so}");
    let count =
        |what: &str| -> usize { so.lines().find(|l| l.contains(what)).unwrap().split_whitespace().last().unwrap().parse().unwrap() };
    assert_eq!((count("no face found:"), count("unreadable:")), (1, 1), "{so}");
    assert!(se.contains(&format!("Unable to align \"{}\"", input.join("big/blank.png").display())), "{se}");
    let bmp = se.lines().find(|l| l.contains("huge.bmp")).unwrap();
    assert!(bmp.contains("image too large to decode: 20000 x 20000 pixels (1.2 GB as RGB, limit 0.5 GB); only PNG is streamed"), "{bmp}");

    // the crop box: where the face was pasted (detected on the enlarged face in memory)
    let list = fs::read_to_string(out.join("bounding_boxes_00000.txt")).unwrap();
    let crop_path = out.join("big/face.png");
    let line = list.lines().find(|l| l.starts_with(&crop_path.display().to_string())).unwrap_or_else(|| panic!("{list}"));
    let bb: Vec<u32> = line.split_whitespace().skip(1).map(|v| v.parse().unwrap()).collect();
    let bb = [bb[0], bb[1], bb[2], bb[3]];
    assert!(list.lines().any(|l| l == out.join("big/blank.png").display().to_string()), "{list}");
    let want = m.detect(&face)[0].bbox;
    let want = [want[0] + at.0 as f64, want[1] + at.1 as f64, want[2] + at.0 as f64, want[3] + at.1 as f64];
    let want = margin_box(want, 32.0, HUGE, HUGE).unwrap();
    let side = (want[2] - want[0]).max(want[3] - want[1]) as f64;
    let off = (0..4).map(|k| (bb[k] as f64 - want[k] as f64).abs()).fold(0.0, f64::max);
    println!("crop box {bb:?}, from the face in memory {want:?}: {:.1}% of the face size apart", 100.0 * off / side);
    assert!(off <= 0.05 * side, "crop box {bb:?} vs {want:?}");

    // the crop: the box's pixels of the original, resized as for any image
    let crop = image::open(&crop_path).unwrap().to_rgb8();
    assert_eq!(crop.dimensions(), (160, 160));
    let window =
        image::RgbImage::from_fn(bb[2] - bb[0], bb[3] - bb[1], |x, y| image::Rgb(huge_pixel(Some(&face), at, bb[0] + x, bb[1] + y)));
    assert_eq!(crop, crop_and_resize(&window, [0, 0, window.width(), window.height()], 160));
}

/// Every file under `root` (relative path -> bytes).
fn tree(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(p.strip_prefix(root).unwrap().display().to_string(), fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// A dataset with every kind of bad input, plus face photos in several encodings when the
/// sample photos are available. Returns the number of face images.
fn make_dataset(root: &Path) -> usize {
    let bad = root.join("bad");
    fs::create_dir_all(&bad).unwrap();
    fs::write(bad.join("empty.jpg"), b"").unwrap();
    fs::write(bad.join("text.jpg"), b"this is not a jpeg\n").unwrap();
    let grad = image::RgbImage::from_fn(40, 30, |x, y| image::Rgb([(x * 6) as u8, (y * 8) as u8, 90]));
    let mut jpg = Vec::new();
    grad.write_to(&mut std::io::Cursor::new(&mut jpg), image::ImageFormat::Jpeg).unwrap();
    fs::write(bad.join("truncated.jpg"), &jpg[..jpg.len() / 2]).unwrap();
    image::GrayImage::from_fn(30, 30, |x, _| image::Luma([(x * 8) as u8])).save(bad.join("gray.png")).unwrap();
    image::ImageBuffer::<image::Luma<u16>, Vec<u16>>::from_fn(30, 30, |x, _| image::Luma([(x * 2000) as u16]))
        .save(bad.join("gray16.png"))
        .unwrap();
    image::RgbaImage::from_pixel(30, 30, image::Rgba([1, 2, 3, 0])).save(bad.join("rgba.png")).unwrap();
    fs::copy(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mtcnn/cmyk.jpg"), bad.join("cmyk.jpg")).unwrap();
    image::RgbImage::from_pixel(5, 5, image::Rgb([9, 9, 9])).save(bad.join("tiny.png")).unwrap();
    fs::write(bad.join("huge.png"), huge_png()).unwrap();
    fs::write(bad.join("notes.txt"), b"not an image extension").unwrap();
    let Some(p) = photos() else { return 0 };
    let face = root.join("face");
    fs::create_dir_all(&face).unwrap();
    let tom = image::open(p.join("Tom_Hanks_54745.png")).unwrap();
    tom.to_rgb8().save(face.join("tom_rgb.png")).unwrap();
    tom.to_luma8().save(face.join("tom_gray.png")).unwrap();
    tom.to_rgba8().save(face.join("tom_rgba.png")).unwrap();
    tom.to_rgb16().save(face.join("tom_16bit.png")).unwrap();
    tom.to_rgb8().save(face.join("tom.jpg")).unwrap();
    4 + 1
}

#[test]
fn align_cli_bad_inputs_resume_and_shards() {
    if weights().is_none() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let input = d.path().join("in");
    let faces = make_dataset(&input);
    let out1 = d.path().join("out1");
    let (so, se) = run_ok(facenet().arg("align").arg(&input).arg(&out1).args([
        "--image_size",
        "64",
        "--margin",
        "10",
        "--gpu_memory_fraction",
        "0.5",
    ]));
    println!("{so}\n{se}");
    assert_eq!(se.matches("--gpu_memory_fraction").count(), 1, "said once: {se}");
    assert!(so.contains(&format!("Total number of images: {}", 9 + faces)), "{so}");
    // empty, text, the truncated JPEG (refused like the reference's PIL does) and the
    // 20000x20000 header without its pixels cannot be decoded (the huge PNG is streamed, see
    // `align_cli_streams_huge_png`, and ends after its header): a one-line reason each
    assert!(se.contains("empty.jpg: empty file"), "{se}");
    assert!(se.contains("truncated.jpg: truncated JPEG"), "{se}");
    assert!(se.contains("text.jpg"), "{se}");
    let huge = se.lines().find(|l| l.contains("huge.png")).unwrap_or_else(|| panic!("huge.png not reported: {se}"));
    assert!(huge.starts_with("unreadable: ") && huge.contains("at row 0 of 20000"), "{huge}");
    assert!(se.contains("notes.txt"), "non-image reported: {se}");
    let unreadable: usize = so.lines().find(|l| l.contains("unreadable:")).unwrap().split_whitespace().nth(1).unwrap().parse().unwrap();
    assert_eq!(unreadable, 4, "{so}");
    let files = tree(&out1);
    let bb = String::from_utf8(files["bounding_boxes_00000.txt"].clone()).unwrap();
    // every readable bad image without a face has a path-only line
    for stem in ["gray", "gray16", "rgba", "cmyk", "tiny"] {
        let want = out1.join("bad").join(format!("{stem}.png")).display().to_string();
        assert!(bb.lines().any(|l| l == want), "{stem} missing from\n{bb}");
    }
    if faces > 0 {
        for stem in ["tom_rgb", "tom_gray", "tom_rgba", "tom_16bit", "tom"] {
            let key = format!("face/{stem}.png");
            assert!(files.contains_key(&key), "{key} not written: {:?}", files.keys());
            let img = image::load_from_memory(&files[&key]).unwrap();
            assert_eq!((img.width(), img.height()), (64, 64));
            let line = bb.lines().find(|l| l.contains(&key)).unwrap();
            assert_eq!(line.split_whitespace().count(), 5, "{line}");
        }
    }

    // rerun: everything skipped, same files byte for byte
    let (so, _) = run_ok(facenet().arg("align").arg(&input).arg(&out1).args(["--image_size", "64", "--margin", "10"]));
    assert!(so.contains(&format!("already aligned:    {:>8}", faces)), "{so}");
    assert_eq!(tree(&out1), files);

    // an interrupted run: a crop and the list missing, a stale temporary file left behind
    if faces > 0 {
        fs::remove_file(out1.join("face/tom_gray.png")).unwrap();
        fs::write(out1.join("face/.tom_rgb.png.4000000000.0.tmp"), b"partial").unwrap();
    }
    fs::remove_file(out1.join("bounding_boxes_00000.txt")).unwrap();
    run_ok(facenet().arg("align").arg(&input).arg(&out1).args(["--image_size", "64", "--margin", "10"]));
    assert_eq!(tree(&out1), files);

    // two shards, run at the same time, in random order, make the same crops
    let out2 = d.path().join("out2");
    let kids: Vec<_> = ["0/2", "1/2"]
        .iter()
        .map(|s| {
            facenet()
                .arg("align")
                .arg(&input)
                .arg(&out2)
                .args(["--image_size", "64", "--margin", "10", "--random_order", "--shard", s, "--threads", "1"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut k in kids {
        assert!(k.wait().unwrap().success());
    }
    let crops = |t: &BTreeMap<String, Vec<u8>>| {
        t.iter().filter(|(k, _)| k.ends_with(".png")).map(|(k, v)| (k.clone(), v.clone())).collect::<BTreeMap<_, _>>()
    };
    let t2 = tree(&out2);
    assert_eq!(crops(&t2), crops(&files));
    assert!(t2.contains_key("bounding_boxes_00001.txt") && t2.contains_key("bounding_boxes_00002.txt"));
    // ... and their bounding-box lists together hold exactly the one run's lines
    let lines = |t: &BTreeMap<String, Vec<u8>>, names: &[&str], root: &Path| {
        let root = root.display().to_string();
        let mut v: Vec<String> = names
            .iter()
            .flat_map(|n| String::from_utf8(t[*n].clone()).unwrap().lines().map(|l| l.replacen(&root, "OUT", 1)).collect::<Vec<_>>())
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        lines(&t2, &["bounding_boxes_00001.txt", "bounding_boxes_00002.txt"], &out2),
        lines(&files, &["bounding_boxes_00000.txt"], &out1)
    );

    // several faces per image: <stem>_0.png
    if faces > 0 {
        let out3 = d.path().join("out3");
        run_ok(facenet().arg("align").arg(&input).arg(&out3).args(["--image_size", "64", "--detect_multiple_faces", "True"]));
        assert!(out3.join("face/tom_rgb_0.png").is_file());
        assert!(!out3.join("face/tom_rgb.png").exists());
    }
}

/// `cargo test --release --test align bench_group_photo -- --ignored --nocapture`
#[test]
#[ignore]
fn bench_group_photo() {
    let Some(m) = detector() else { return };
    let Some(dir) = photos() else { return };
    let b = facenet::align::bench_align(&[dir.join("t1.jpg")], m, 5).unwrap();
    println!("{b}");
}

/// Per-layer timing of P-Net on the group photo's first pyramid level (dev aid).
#[test]
#[ignore]
fn bench_pnet_layers() {
    use std::time::Instant;
    let Some(m) = detector() else { return };
    let p = &m.nets.pnet;
    let x = pattern_nchw(1, 532, 768);
    for _ in 0..2 {
        let t = Instant::now();
        let a = p.conv1.forward(x.clone());
        let _ = a.clone().into_data();
        let t1 = t.elapsed();
        let b = p.prelu1.forward(a);
        let _ = b.clone().into_data();
        let t2 = t.elapsed();
        let c = p.pool1.forward(b);
        let _ = c.clone().into_data();
        let t3 = t.elapsed();
        let d = p.prelu2.forward(p.conv2.forward(c));
        let _ = d.clone().into_data();
        let t4 = t.elapsed();
        let e = p.prelu3.forward(p.conv3.forward(d));
        let _ = e.clone().into_data();
        let t5 = t.elapsed();
        let o = p.forward(x.clone());
        let _ = o.prob.into_data();
        let t6 = t.elapsed();
        println!(
            "conv1 {t1:?} prelu1 {:?} pool {:?} conv2+prelu {:?} conv3+prelu {:?} whole {:?}",
            t2 - t1,
            t3 - t2,
            t4 - t3,
            t5 - t4,
            t6 - t5
        );
    }
    let x = pattern_nchw(882, 24, 24);
    let t = Instant::now();
    let _ = m.nets.rnet.forward(x).prob.into_data();
    println!("rnet 882: {:?}", t.elapsed());
    let x = pattern_nchw(52, 48, 48);
    let t = Instant::now();
    let _ = m.nets.onet.forward(x).prob.into_data();
    println!("onet 52: {:?}", t.elapsed());
}

/// Raw conv timings of the shapes MTCNN uses most (dev aid: compare burn feature sets).
#[test]
#[ignore]
fn bench_convs() {
    use burn::nn::conv::Conv2dConfig;
    use burn::tensor::Distribution;
    use std::time::Instant;
    let d = Device::flex();
    let c1 = Conv2dConfig::new([3, 10], [3, 3]).init(&d);
    let c3 = Conv2dConfig::new([16, 32], [3, 3]).init(&d);
    let r1 = Conv2dConfig::new([28, 48], [3, 3]).init(&d);
    let x = Tensor::<4>::random([1, 3, 532, 768], Distribution::Normal(0.0, 1.0), &d);
    let y = Tensor::<4>::random([1, 16, 265, 383], Distribution::Normal(0.0, 1.0), &d);
    let z = Tensor::<4>::random([882, 28, 11, 11], Distribution::Normal(0.0, 1.0), &d);
    for _ in 0..3 {
        let t = Instant::now();
        let _ = c1.forward(x.clone()).into_data();
        let a = t.elapsed();
        let t = Instant::now();
        let _ = c3.forward(y.clone()).into_data();
        let b = t.elapsed();
        let t = Instant::now();
        let _ = r1.forward(z.clone()).into_data();
        let c = t.elapsed();
        println!("conv1 {a:?} conv3 {b:?} rnet-conv2 {c:?}");
    }
}

/// `facenet embed --align` and `facenet compare` on raw photos with a (barely) trained small
/// model: the group photo and the portrait have faces, a blank image has none and is skipped
/// with a message; rows are L2-normalised embeddings in the listed order; compare prints the
/// symmetric distance matrix with a zero diagonal.
#[test]
fn embed_align_and_compare_on_photos() {
    let (Some(_), Some(photos)) = (weights(), photos()) else {
        eprintln!("SKIPPED: MTCNN weights or sample photos unavailable");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let syn = tmp.path().join("syn");
    run_ok(facenet().arg("synth").arg(&syn).args([
        "--identities",
        "4",
        "--images_per_identity",
        "3",
        "--image_size",
        "64",
        "--pairs_identities",
        "4",
        "--pairs_images_per_identity",
        "3",
        "--pairs_folds",
        "2",
        "--pairs_per_fold",
        "3",
        "--no_baseline",
    ]));
    run_ok(
        facenet()
            .arg("train")
            .args(["--data_dir"])
            .arg(syn.join("train"))
            .args(["--logs_base_dir"])
            .arg(tmp.path().join("logs"))
            .args(["--models_base_dir"])
            .arg(tmp.path().join("models"))
            .args([
                "--model_def",
                "inception_resnet_v1_small",
                "--image_size",
                "64",
                "--max_nrof_epochs",
                "1",
                "--epoch_size",
                "1",
                "--batch_size",
                "4",
            ]),
    );
    let run = fs::read_dir(tmp.path().join("models")).unwrap().next().unwrap().unwrap().path();

    let blank = tmp.path().join("blank.png");
    image::RgbImage::from_pixel(120, 90, image::Rgb([200, 200, 200])).save(&blank).unwrap();
    let npy = tmp.path().join("emb.npy");
    let (stdout, stderr) = run_ok(
        facenet()
            .arg("embed")
            .arg("--align")
            .arg("--model")
            .arg(&run)
            .arg(photos.join("t1.jpg"))
            .arg(&blank)
            .arg(photos.join("Tom_Hanks_54745.png"))
            .arg("-o")
            .arg(&npy),
    );
    assert!(stdout.contains("2 images"), "{stdout}");
    assert!(stderr.contains("no face found, skipped") && stderr.contains("blank.png"), "{stderr}");
    let listed = fs::read_to_string(npy.with_extension("txt")).unwrap();
    let names: Vec<&str> = listed.lines().map(|l| l.rsplit('/').next().unwrap()).collect();
    assert_eq!(names, ["t1.jpg", "Tom_Hanks_54745.png"]);
    let bytes = fs::read(&npy).unwrap();
    let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
    assert_eq!(npy.shape(), &[2, 128]);
    let rows: Vec<f32> = npy.into_vec().unwrap();
    for r in rows.chunks(128) {
        let norm: f32 = r.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-3, "embedding norm {norm}");
    }

    let (stdout, _) =
        run_ok(facenet().arg("compare").arg("--model").arg(&run).arg(photos.join("t1.jpg")).arg(photos.join("Tom_Hanks_54745.png")));
    let matrix: Vec<Vec<f64>> = stdout
        .lines()
        .filter_map(|l| {
            let nums: Vec<f64> = l.split_whitespace().filter_map(|t| t.parse().ok()).collect();
            (l.contains('.') && nums.len() == 3).then(|| nums[1..].to_vec())
        })
        .collect();
    assert_eq!(matrix.len(), 2, "{stdout}");
    assert!(matrix[0][0].abs() < 1e-4 && matrix[1][1].abs() < 1e-4, "{stdout}");
    assert!((matrix[0][1] - matrix[1][0]).abs() < 1e-4 && matrix[0][1] > 0.0, "{stdout}");
}
