//! Hostile input, as a user could give it: images whose headers claim absurd sizes,
//! checkpoints whose `model.json` lies, option values out of range, and property tests of the
//! parsers (pairs files, schedule files, `.npy`). Every case ends with an error naming the file
//! or the option (exit status 1, or 2 for a usage error), never a panic (101) or an
//! allocation abort, and `align` goes on with the other images.
//!
//! The property tests run [`CASES`] cases per parser and property (proptest, in-process,
//! no failure files written).

use std::fs;
use std::path::Path;

use assert_cmd::Command;
use facenet::align::weights::{weights_dir, weights_present};
use facenet::data::npy::{read_bools, read_matrix, write_bools, write_matrix_f32};
use facenet::data::pairs::parse_pairs;
use facenet::model::load::{MODEL_FILE, MODEL_JSON};
use facenet::train::schedule::{LearningRatePolicy, RateSource, Schedule, ScheduledRate};
use image::ImageEncoder;
use proptest::prelude::*;

mod common;
use common::{children_peak_rss_mib, crc32, run_no_crash as run, small_checkpoint_files};

fn facenet() -> Command {
    let mut c = Command::cargo_bin("facenet").unwrap();
    c.env("FACENET_NO_PROGRESS", "1");
    c
}

/// A valid 2 x 2 RGB PNG whose header is rewritten to claim `w x h` pixels (Adam7-interlaced
/// if asked), its CRC recomputed: a few dozen bytes that claim any size.
fn png_claiming(w: u32, h: u32, interlaced: bool) -> Vec<u8> {
    let mut png = Vec::new();
    image::codecs::png::PngEncoder::new(&mut png).write_image(&[7u8; 12], 2, 2, image::ExtendedColorType::Rgb8).unwrap();
    png[16..20].copy_from_slice(&w.to_be_bytes());
    png[20..24].copy_from_slice(&h.to_be_bytes());
    png[28] = interlaced as u8;
    let crc = crc32(&png[12..29]);
    png[29..33].copy_from_slice(&crc.to_be_bytes());
    png
}

/// A BMP whose header claims `w x h` pixels (no pixel data).
fn bmp_claiming(w: i32, h: i32) -> Vec<u8> {
    let mut bmp = Vec::new();
    image::RgbImage::new(2, 2).write_to(&mut std::io::Cursor::new(&mut bmp), image::ImageFormat::Bmp).unwrap();
    bmp[18..22].copy_from_slice(&w.to_le_bytes());
    bmp[22..26].copy_from_slice(&h.to_le_bytes());
    bmp
}

/// A valid JPEG whose frame header (SOF0) claims `w x h` pixels.
fn jpeg_claiming(w: u16, h: u16) -> Vec<u8> {
    let mut jpg = Vec::new();
    let img = image::RgbImage::from_fn(16, 16, |x, y| image::Rgb([(x * 16) as u8, (y * 16) as u8, 99]));
    img.write_to(&mut std::io::Cursor::new(&mut jpg), image::ImageFormat::Jpeg).unwrap();
    let sof = jpg.windows(2).position(|m| m == [0xFF, 0xC0]).expect("a baseline JPEG");
    jpg[sof + 5..sof + 7].copy_from_slice(&h.to_be_bytes());
    jpg[sof + 7..sof + 9].copy_from_slice(&w.to_be_bytes());
    jpg
}

/// `facenet align` and `facenet detect` on images whose headers claim absurd sizes: each is
/// refused from its header with its size (reported, counted, skipped), the other images are
/// processed, and no process takes more than a few hundred MB.
#[test]
fn absurd_image_headers_are_refused_per_image() {
    if !weights_present(&weights_dir()) {
        eprintln!("SKIPPED: MTCNN weights not in {} (run `facenet fetch-weights`)", weights_dir().display());
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("in/Someone");
    fs::create_dir_all(&dir).unwrap();
    image::RgbImage::from_pixel(64, 48, image::Rgb([200, 200, 200])).save(dir.join("blank.png")).unwrap();
    let hostile = [
        // the ~100 GB area-resampling table of the streaming path, before
        ("tall.png", png_claiming(1, 2_147_483_647, false), "a side over 65535 pixels"),
        // interlaced (cannot be streamed), over the in-memory limit
        ("interlaced.png", png_claiming(22000, 22000, true), "22000 x 22000 pixels"),
        // non-interlaced, over the streaming limit too
        ("vast.png", png_claiming(40000, 40000, false), "40000 x 40000 pixels"),
        ("huge.bmp", bmp_claiming(30000, 30000), "30000 x 30000 pixels"),
        ("huge.jpg", jpeg_claiming(65000, 65000), "65000 x 65000 pixels"),
    ];
    for (name, bytes, _) in &hostile {
        fs::write(dir.join(name), bytes).unwrap();
    }
    let out = d.path().join("out");
    let (code, so, se) = run(facenet().arg("align").arg(d.path().join("in")).arg(&out));
    assert_eq!(code, Some(0), "{so}\n{se}");
    assert!(so.contains("Total number of images: 6"), "{so}");
    let count =
        |what: &str| -> usize { so.lines().find(|l| l.contains(what)).unwrap().split_whitespace().last().unwrap().parse().unwrap() };
    assert_eq!((count("unreadable:"), count("no face found:")), (5, 1), "{so}\n{se}");
    for (name, _, size) in &hostile {
        let line = se.lines().find(|l| l.contains(&format!("{name}:"))).unwrap_or_else(|| panic!("{name} not reported:\n{se}"));
        assert!(line.starts_with("unreadable: ") && line.contains("image too large to decode") && line.contains(size), "{line}");
    }
    assert!(se.contains("Unable to align") && se.contains("blank.png"), "{se}");
    assert!(out.join("bounding_boxes_00000.txt").is_file());

    // detect: each named with its reason, the readable image still processed, exit status 1
    let mut detect = facenet();
    detect.arg("detect").arg(dir.join("blank.png"));
    for (name, _, _) in &hostile {
        detect.arg(dir.join(name));
    }
    let (code, so, se) = run(&mut detect);
    assert_eq!(code, Some(1), "{so}\n{se}");
    assert!(so.contains("blank.png (64 x 48): 0 faces"), "{so}");
    for (name, _, size) in &hostile {
        assert!(se.lines().any(|l| l.contains(name) && l.contains("image too large to decode") && l.contains(size)), "{name}: {se}");
    }
    let peak = children_peak_rss_mib();
    println!("peak resident memory of the commands: {peak:.0} MiB");
    assert!(peak < 1024.0, "{peak} MiB");
}

/// A small checkpoint (`model.safetensors` + `model.json`) in `dir`; returns its `model.json`.
fn write_checkpoint(dir: &Path) -> serde_json::Value {
    fs::create_dir_all(dir).unwrap();
    let (weights, json) = small_checkpoint_files();
    fs::write(dir.join(MODEL_FILE), weights).unwrap();
    json
}

/// Every field of `model.json` is input: a wrong value is an error naming the file, before
/// the network is built (no panic on 0, no abort on absurd sizes).
#[test]
fn lying_model_json_is_refused_naming_the_file() {
    let d = tempfile::tempdir().unwrap();
    let ckpt = d.path().join("ckpt-000001");
    let good = write_checkpoint(&ckpt);
    let img = d.path().join("face.png");
    image::RgbImage::from_fn(40, 40, |x, y| image::Rgb([(x * 6) as u8, (y * 6) as u8, 128])).save(&img).unwrap();
    let embed = |out: &str| {
        let mut c = facenet();
        c.args(["embed", "--device", "cpu", "--model"]).arg(&ckpt).arg(&img).arg("-o").arg(d.path().join(out));
        run(&mut c)
    };
    fs::write(ckpt.join(MODEL_JSON), serde_json::to_string(&good).unwrap()).unwrap();
    let (code, so, se) = embed("good.npy");
    assert_eq!(code, Some(0), "the checkpoint as written loads:\n{so}\n{se}");

    let cases: &[(&[&str], serde_json::Value)] = &[
        (&["/meta/embedding_size"], 0.into()),
        (&["/meta/embedding_size", "/config/embedding_size"], 0.into()),
        (&["/meta/image_size"], 0.into()),
        (&["/meta/image_size"], 4_294_967_295u64.into()),
        (&["/meta/image_size"], 100_000.into()),
        (&["/config/arch/block35_repeats"], 1_000_000_000_000u64.into()),
        (&["/config/arch/block17_width"], 1_000_000_000u64.into()),
        (&["/config/arch/stem/0"], 0.into()),
        (&["/config/arch/reduction_b/6"], 100_000.into()),
        (&["/config/arch/block8_scale"], serde_json::Value::Null),
        (&["/meta/num_classes", "/config/num_classes"], 1_000_000_000_000_000u64.into()),
        (&["/meta/num_classes"], 7.into()),
        // within the limits, but far more values than the weights file holds
        (&["/meta/embedding_size", "/config/embedding_size"], 60_000.into()),
        (&["/config/keep_probability"], 5.into()),
        (&["/config/bn_epsilon"], (-1).into()),
        (&["/config/bn_momentum"], 2.into()),
        (&["/meta/model_def"], "resnet_9000".into()),
        (&["/format"], "facenet-checkpoint-0".into()),
    ];
    for (k, (fields, value)) in cases.iter().enumerate() {
        let mut mf = good.clone();
        for f in *fields {
            *mf.pointer_mut(f).unwrap_or_else(|| panic!("{f}")) = value.clone();
        }
        fs::write(ckpt.join(MODEL_JSON), serde_json::to_string(&mf).unwrap()).unwrap();
        let (code, so, se) = embed(&format!("{k}.npy"));
        assert_eq!(code, Some(1), "{fields:?} = {value}:\n{so}\n{se}");
        assert!(se.contains(&ckpt.join(MODEL_JSON).display().to_string()), "{fields:?} = {value}: the error names the file:\n{se}");
    }
}

/// Out-of-range option values: a usage error (2) or an error (1) naming the option, before
/// anything is allocated or read.
#[test]
fn option_values_are_range_checked() {
    let d = tempfile::tempdir().unwrap();
    let t = d.path().display().to_string();
    let img = format!("{t}/none.png");
    let cases: &[(&str, &[&str])] = &[
        ("--image_size", &["align", &t, &t, "--image_size", "100000"]),
        ("--image_size", &["align", &t, &t, "--image_size", "4294967295"]),
        ("--image_size", &["align", &t, &t, "--image_size", "0"]),
        ("--margin", &["align", &t, &t, "--margin", "4294967295"]),
        ("--threads", &["align", &t, &t, "--threads", "100000"]),
        ("--threads", &["align", &t, &t, "--threads", "0"]),
        ("--min_face_size", &["detect", &img, "--min_face_size", "0"]),
        ("--factor", &["detect", &img, "--factor", "1"]),
        ("--thresholds", &["detect", &img, "--thresholds", "0.6,0.7,nan"]),
        ("--image_size", &["embed", &img, "--model", &t, "--image_size", "0"]),
        ("--batch_size", &["embed", &img, "--model", &t, "--batch_size", "0"]),
        ("--batch_size", &["embed", &img, "--model", &t, "--batch_size", "100000000"]),
        ("--margin", &["embed", &img, "--model", &t, "--margin", "nan"]),
        ("--lfw_nrof_folds", &["validate", "--lfw_nrof_folds", "1"]),
        ("--lfw_nrof_folds", &["validate", "--lfw_nrof_folds", "1000000"]),
        ("--lfw_batch_size", &["validate", "--lfw_batch_size", "0"]),
        ("--image_size", &["validate", "--image_size", "100000"]),
        ("--distance_metric", &["validate", "--distance_metric", "2"]),
        ("--image_size", &["compare", &t, &img, &img, "--image_size", "4294967295"]),
        ("--margin", &["compare", &t, &img, &img, "--margin=-1"]),
        ("--image_size", &["synth", &t, "--image_size", "100000"]),
        ("--identities", &["synth", &t, "--identities", "100000000000"]),
        ("--threads", &["synth", &t, "--threads", "100000"]),
        ("--epochs", &["demo", "--epochs", "0"]),
        ("--identities", &["demo", "--identities", "0"]),
        ("--image_size", &["train", "--data_dir", &t, "--image_size", "100000"]),
        ("--image_size", &["train", "--data_dir", &t, "--image_size", "4294967295"]),
        ("--image_size", &["train", "--data_dir", &t, "--image_size", "0"]),
        ("--batch_size", &["train", "--data_dir", &t, "--batch_size", "0"]),
        ("--batch_size", &["train", "--data_dir", &t, "--batch_size", "100000000"]),
        ("--epoch_size", &["train", "--data_dir", &t, "--epoch_size", "0"]),
        ("--embedding_size", &["train", "--data_dir", &t, "--embedding_size", "1000000000"]),
        ("--nrof_preprocess_threads", &["train", "--data_dir", &t, "--nrof_preprocess_threads", "100000"]),
        ("--lfw_nrof_folds", &["train", "--data_dir", &t, "--lfw_dir", &t, "--lfw_nrof_folds", "1000000"]),
        ("--weight_decay", &["train", "--data_dir", &t, "--weight_decay", "nan"]),
        ("--keep_probability", &["train", "--data_dir", &t, "--keep_probability", "2"]),
        ("--image_size", &["bench", "train", "--image_size", "10"]),
        ("--batch_size", &["bench", "train", "--batch_size", "0"]),
        ("--image_size", &["bench", "embed", "--image_size", "100000"]),
        ("--nrof_preprocess_threads", &["bench", "loader", "--nrof_preprocess_threads", "100000"]),
        ("--image_size", &["bench", "synth", "--image_size", "100000"]),
        ("--num_classes", &["bench", "parity", "--num_classes", "100000000000"]),
    ];
    for (option, args) in cases {
        let (code, so, se) = run(facenet().args(*args).env("FACENET_DEVICE", "cpu"));
        assert!(matches!(code, Some(1 | 2)), "{args:?}: {code:?}\n{so}\n{se}");
        // clap names options in kebab-case, our own checks in the reference's snake_case
        let named = se.contains(option) || se.contains(&option.replace('_', "-"));
        assert!(named, "{args:?}: the error names {option}:\n{se}");
    }
}

/// Cases per parser and property.
const CASES: u32 = 1000;

const PAIRS: &str = "2\t2\nAnn\t1\t2\nBob\t1\tCid\t3\n# comment\n\nDee 4 5\nEve 1 Fay 2\n";
const SCHEDULE: &str = "# epoch: rate\n0: 0.1\n65: 0.01\n77: 0.001\n91: -1\n";

/// `base` with bytes overwritten at `edits` (positions modulo its length) and cut to `cut`
/// bytes (modulo its length + 1).
fn mutate(base: &[u8], edits: &[(usize, u8)], cut: usize) -> Vec<u8> {
    let mut v = base.to_vec();
    for &(at, byte) in edits {
        if !v.is_empty() {
            let n = v.len();
            v[at % n] = byte;
        }
    }
    v.truncate(cut % (base.len() + 1));
    v
}

/// Text from bytes: arbitrary, or a valid file mutated (bytes overwritten, lines cut).
fn text_of(base: &str, arbitrary: &[u8], edits: &[(usize, u8)], cut: usize, which: bool) -> String {
    let bytes = if which { arbitrary.to_vec() } else { mutate(base.as_bytes(), edits, cut) };
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Valid `.npy` files to mutate: a 2 x 3 float32 matrix and 4 bools.
fn npy_files() -> &'static (Vec<u8>, Vec<u8>) {
    static F: std::sync::OnceLock<(Vec<u8>, Vec<u8>)> = std::sync::OnceLock::new();
    F.get_or_init(|| {
        let d = tempfile::tempdir().unwrap();
        let (m, b) = (d.path().join("m.npy"), d.path().join("b.npy"));
        write_matrix_f32(&m, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 2, 3).unwrap();
        write_bools(&b, &[true, false, false, true]).unwrap();
        (fs::read(m).unwrap(), fs::read(b).unwrap())
    })
}

/// Both readers on `bytes` written to a file; a failure must name the file.
fn read_npy(bytes: &[u8]) {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("x.npy");
    fs::write(&p, bytes).unwrap();
    if let Err(e) = read_matrix(&p) {
        assert!(e.to_string().contains("x.npy"), "{e}");
    }
    if let Err(e) = read_bools(&p) {
        assert!(e.to_string().contains("x.npy"), "{e}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn pairs_parser_never_panics(
        arbitrary in prop::collection::vec(any::<u8>(), 0..256),
        edits in prop::collection::vec((any::<usize>(), any::<u8>()), 0..6),
        cut in any::<usize>(),
        which in any::<bool>(),
    ) {
        let text = text_of(PAIRS, &arbitrary, &edits, cut, which);
        if let Err(e) = parse_pairs(&text, Path::new("pairs.txt")) {
            prop_assert!(e.to_string().starts_with("pairs.txt"), "{}", e);
        }
    }

    #[test]
    fn schedule_parser_never_panics(
        arbitrary in prop::collection::vec(any::<u8>(), 0..256),
        edits in prop::collection::vec((any::<usize>(), any::<u8>()), 0..6),
        cut in any::<usize>(),
        which in any::<bool>(),
        epoch in any::<usize>(),
        step in any::<u64>(),
    ) {
        let text = text_of(SCHEDULE, &arbitrary, &edits, cut, which);
        match Schedule::parse(&text, Path::new("schedule.txt")) {
            Ok(s) => {
                let policy = LearningRatePolicy { source: RateSource::File(s), decay_epochs: 100, decay_factor: 0.9, epoch_size: 1000 };
                for e in [0, 1, 66, epoch] {
                    if let Ok(ScheduledRate::Rate(r)) = policy.base_rate(e) {
                        prop_assert!(r > 0.0 && policy.decayed(r, step).is_finite());
                    }
                }
            }
            Err(e) => prop_assert!(e.to_string().starts_with("schedule.txt"), "{}", e),
        }
    }

    #[test]
    fn npy_readers_never_panic_on_mutations(
        edits in prop::collection::vec((any::<usize>(), any::<u8>()), 0..6),
        cut in any::<usize>(),
        matrix in any::<bool>(),
    ) {
        let (m, b) = npy_files();
        read_npy(&mutate(if matrix { m } else { b }, &edits, cut));
    }

    #[test]
    fn npy_readers_never_panic_on_lying_headers(
        shape in prop::collection::vec(prop_oneof![Just(0u64), 1u64..8, any::<u64>()], 0..4),
        descr in prop::sample::select(vec!["<f4", "<f8", "|b1", "<i8", "<u8", ">f4", "<c16", "|O", "<U3", "[('a', '<f4')]"]),
        fortran in any::<bool>(),
        payload in prop::collection::vec(any::<u8>(), 0..200),
        arbitrary in prop::collection::vec(any::<u8>(), 0..200),
    ) {
        let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
        let tuple = if dims.len() == 1 { format!("({},)", dims[0]) } else { format!("({})", dims.join(", ")) };
        let quoted = if descr.starts_with('[') { descr.to_string() } else { format!("'{descr}'") };
        let dict = format!("{{'descr': {quoted}, 'fortran_order': {}, 'shape': {tuple}, }}", if fortran { "True" } else { "False" });
        let mut header = dict.into_bytes();
        while (10 + header.len() + 1) % 64 != 0 {
            header.push(b' ');
        }
        header.push(b'\n');
        let mut file = b"\x93NUMPY\x01\x00".to_vec();
        file.extend_from_slice(&(header.len() as u16).to_le_bytes());
        file.extend_from_slice(&header);
        file.extend_from_slice(&payload);
        read_npy(&file);
        read_npy(&arbitrary);
    }
}
