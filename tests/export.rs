//! `facenet export` (issue #20, item 2): the real binary writes ONNX, a facenet-pytorch state
//! dict and one `.safetensors` from a checkpoint; the ONNX graph runs in `tract-onnx` and gives
//! our embeddings; the state dict and the `.safetensors` load back into identical weights; bad
//! input is a clear error that leaves nothing behind.

use std::fs;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use burn::module::Module;
use burn::store::{bridge, ModuleSnapshot, SafetensorsStore};
use burn::tensor::{Device, Distribution, Tensor};
use facenet::data::preprocess::Standardization;
use facenet::model::inception_resnet_v1::{InceptionResnetV1, InceptionResnetV1Config};
use facenet::model::load::{load_inference_model, load_model, load_pytorch_weights, ModelFile, ModelMeta, FORMAT, MODEL_FILE, MODEL_JSON};
use tract_onnx::prelude::*;

mod common;
use common::run_no_crash as run;

fn facenet() -> Command {
    let mut c = Command::cargo_bin("facenet").unwrap();
    c.env("FACENET_NO_PROGRESS", "1");
    c
}

fn export(model: &Path, out: &Path, extra: &[&str]) -> (Option<i32>, String, String) {
    let mut c = facenet();
    c.arg("export").arg(model).arg(out).args(extra);
    run(&mut c)
}

/// A checkpoint of `config` whose batch-norm running statistics have moved away from 0 / 1
/// (one training-mode forward pass), so that folding them matters.
fn write_checkpoint(dir: &Path, config: InceptionResnetV1Config, meta: ModelMeta) {
    fs::create_dir_all(dir).unwrap();
    let ad = Device::flex().autodiff();
    let model = config.init(&ad);
    let size = meta.image_size as usize;
    let _ = model.forward(Tensor::<4>::random([4, 3, size, size], Distribution::Normal(0.3, 1.5), &ad));
    model.valid().save_into(&mut SafetensorsStore::from_file(dir.join(MODEL_FILE)).overwrite(true)).unwrap();
    let mf = ModelFile { format: FORMAT.into(), meta, config, epoch: 1, global_step: 10 };
    fs::write(dir.join(MODEL_JSON), serde_json::to_string(&mf).unwrap()).unwrap();
}

fn small_checkpoint(dir: &Path) -> PathBuf {
    let ckpt = dir.join("models").join("ckpt-000001");
    let meta = ModelMeta {
        model_def: "inception_resnet_v1_small".into(),
        embedding_size: 16,
        image_size: 32,
        standardization: Standardization::PerImage,
        num_classes: 3,
    };
    write_checkpoint(&ckpt, InceptionResnetV1Config::small(16, 1.0, 3), meta);
    ckpt
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let n = |v: &[f32]| v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (n(a) * n(b))
}

/// Runs the ONNX file in tract at each batch size and compares every row with our own
/// embeddings of the same input; returns the smallest cosine.
fn onnx_matches_ours(onnx: &Path, model_path: &Path, size: usize, batches: &[usize]) -> f64 {
    let device = Device::flex();
    let (ours, meta) = load_inference_model(model_path, &device).unwrap();
    let dim = meta.embedding_size;
    // one runnable plan, the batch dimension left symbolic as the file declares it
    let plan = tract_onnx::onnx().model_for_path(onnx).unwrap().into_optimized().unwrap().into_runnable().unwrap();
    let mut worst = 1.0f64;
    for &n in batches {
        let x = Tensor::<4>::random([n, 3, size, size], Distribution::Normal(0.0, 1.0), &device);
        let input: Vec<f32> = x.to_data().try_into_vec_as::<f32>().unwrap();
        let want: Vec<f32> = ours.embed(x).to_data().try_into_vec_as::<f32>().unwrap();
        let t = tract_onnx::prelude::Tensor::from_shape(&[n, 3, size, size], &input).unwrap();
        let out = plan.run(tvec!(t.into())).unwrap();
        let got = out[0].to_plain_array_view::<f32>().unwrap();
        assert_eq!(got.shape(), &[n, dim]);
        let got: Vec<f32> = got.iter().copied().collect();
        for r in 0..n {
            let c = cosine(&got[r * dim..(r + 1) * dim], &want[r * dim..(r + 1) * dim]);
            assert!(c >= 0.9999, "batch {n}, row {r}: cosine {c}");
            worst = worst.min(c);
        }
    }
    worst
}

/// Every tensor of a model by name: shape and exact bytes.
fn weights(model: &InceptionResnetV1) -> Vec<(String, Vec<usize>, Vec<u8>)> {
    let mut v: Vec<_> = model
        .collect(None, None, false)
        .into_iter()
        .map(|t| {
            let shape = t.shape.to_vec();
            let bytes = bridge::to_data(&t).unwrap().as_bytes().to_vec();
            (t.name.clone(), shape, bytes)
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

#[test]
fn onnx_export_runs_in_tract_with_our_embeddings() {
    let d = tempfile::tempdir().unwrap();
    let ckpt = small_checkpoint(d.path());
    let onnx = d.path().join("out").join("small.onnx");
    // the run's models folder: its newest checkpoint
    let (code, so, se) = export(ckpt.parent().unwrap(), &onnx, &[]);
    assert_eq!(code, Some(0), "{so}\n{se}");
    assert!(so.contains("small.onnx") && so.contains("onnx"), "{so}");
    let worst = onnx_matches_ours(&onnx, &ckpt, 32, &[1, 3]);
    eprintln!("small model: ONNX in tract vs ours, smallest cosine {worst:.8}");
    // the standardisation is written into the graph's metadata
    let bytes = fs::read(&onnx).unwrap();
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.contains("facenet.standardization") && text.contains("per_image"), "metadata");
    // --format overrides the extension
    let other = d.path().join("small.bin");
    let (code, _, se) = export(&ckpt, &other, &["--format", "onnx"]);
    assert_eq!(code, Some(0), "{se}");
    assert_eq!(fs::read(&other).unwrap(), bytes, "the same graph");
}

/// The full network (160 x 160, 512-d, fixed standardisation): the published models' shape.
#[test]
fn full_model_onnx_export_runs_in_tract() {
    let d = tempfile::tempdir().unwrap();
    let ckpt = d.path().join("ckpt-000003");
    let meta = ModelMeta {
        model_def: "inception_resnet_v1".into(),
        embedding_size: 512,
        image_size: 160,
        standardization: Standardization::Fixed,
        num_classes: 0,
    };
    write_checkpoint(&ckpt, InceptionResnetV1Config::new().with_embedding_size(512), meta);
    let onnx = d.path().join("full.onnx");
    let (code, so, se) = export(&ckpt, &onnx, &["--format", "ONNX"]);
    assert_eq!(code, Some(0), "{so}\n{se}");
    let worst = onnx_matches_ours(&onnx, &ckpt, 160, &[1, 2]);
    eprintln!("full model: ONNX in tract vs ours, smallest cosine {worst:.8}");
}

#[test]
fn pytorch_and_safetensors_exports_load_back_identical() {
    let d = tempfile::tempdir().unwrap();
    let ckpt = small_checkpoint(d.path());
    let device = Device::flex();
    let (original, meta) = load_model(&ckpt, &device).unwrap();
    let want = weights(&original);

    // facenet-pytorch state dict, read back through burn's PyTorch reader
    let pt = d.path().join("small.pt");
    let (code, so, se) = export(&ckpt, &pt, &[]);
    assert_eq!(code, Some(0), "{so}\n{se}");
    assert!(se.contains("512-d"), "a note that facenet-pytorch's class is the full 512-d network: {se}");
    let mut back = InceptionResnetV1Config::small(16, 1.0, 0).init(&device);
    let applied = load_pytorch_weights(&mut back, &pt).unwrap();
    assert!(applied.unused.iter().all(|u| u.ends_with("num_batches_tracked")), "{:?}", applied.unused);
    assert!(applied.unused.iter().any(|u| u.ends_with("num_batches_tracked")), "PyTorch's buffer is written");
    assert_eq!(weights(&back.valid()), want, "the .pt holds the checkpoint's weights exactly");

    // one .safetensors with the model description in its header
    let st = d.path().join("small.safetensors");
    let (code, so, se) = export(&ckpt, &st, &[]);
    assert_eq!(code, Some(0), "{so}\n{se}");
    let (loaded, loaded_meta) = load_model(&st, &device).unwrap();
    assert_eq!(weights(&loaded), want, "the .safetensors holds the checkpoint's weights exactly");
    assert_eq!(loaded_meta, ModelMeta { num_classes: 0, ..meta });
    // and it is a model like any other: embed takes it
    let img = d.path().join("face.png");
    image::RgbImage::from_fn(32, 32, |x, y| image::Rgb([(x * 7) as u8, (y * 7) as u8, 90])).save(&img).unwrap();
    for (model, out) in [(&st, "a.npy"), (&ckpt, "b.npy")] {
        let mut c = facenet();
        c.args(["embed", "--device", "cpu", "--model"]).arg(model).arg(&img).arg("-o").arg(d.path().join(out));
        let (code, so, se) = run(&mut c);
        assert_eq!(code, Some(0), "{so}\n{se}");
    }
    assert_eq!(fs::read(d.path().join("a.npy")).unwrap(), fs::read(d.path().join("b.npy")).unwrap());
    // exporting the exported file again gives the same file
    let again = d.path().join("again.safetensors");
    assert_eq!(export(&st, &again, &[]).0, Some(0));
    assert_eq!(weights(&load_model(&again, &device).unwrap().0), want);
}

#[test]
fn bad_input_is_a_clear_error_and_leaves_nothing() {
    let d = tempfile::tempdir().unwrap();
    let ckpt = small_checkpoint(d.path());
    let out_dir = d.path().join("out");
    fs::create_dir_all(&out_dir).unwrap();
    let listing = || {
        let mut v: Vec<String> = fs::read_dir(&out_dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        v.sort();
        v
    };
    // unknown extension, unknown --format
    let (code, _, se) = export(&ckpt, &out_dir.join("m.h5"), &[]);
    assert_eq!(code, Some(1));
    assert!(se.contains("m.h5") && se.contains(".onnx"), "{se}");
    let (code, _, se) = export(&ckpt, &out_dir.join("m.onnx"), &["--format", "tflite"]);
    assert_eq!(code, Some(1));
    assert!(se.contains("tflite"), "{se}");
    // a model path that is not a model: a folder without checkpoints, a text file, a .pt that
    // is not a zip, a .safetensors that is not one
    let junk = d.path().join("junk.pt");
    fs::write(&junk, b"not a state dict").unwrap();
    let text = d.path().join("notes.safetensors");
    fs::write(&text, b"hello").unwrap();
    for bad in [out_dir.clone(), d.path().join("missing"), junk.clone(), text.clone()] {
        let (code, _, se) = export(&bad, &out_dir.join("m.onnx"), &[]);
        assert_eq!(code, Some(1), "{}", bad.display());
        assert!(se.contains(&bad.display().to_string()), "the error names {}: {se}", bad.display());
    }
    // an output that cannot be written: below a file, or a folder in its place
    let blocker = out_dir.join("file");
    fs::write(&blocker, b"x").unwrap();
    let (code, _, se) = export(&ckpt, &blocker.join("m.onnx"), &[]);
    assert_eq!(code, Some(1));
    assert!(se.contains(&blocker.join("m.onnx").display().to_string()), "{se}");
    fs::create_dir_all(out_dir.join("taken.onnx")).unwrap();
    let (code, _, se) = export(&ckpt, &out_dir.join("taken.onnx"), &[]);
    assert_eq!(code, Some(1));
    assert!(se.contains("taken.onnx"), "{se}");
    assert_eq!(listing(), vec!["file".to_string(), "taken.onnx".to_string()], "nothing half-written left behind");
    assert_eq!(fs::read_dir(out_dir.join("taken.onnx")).unwrap().count(), 0);
}

/// The reference's TensorFlow checkpoint (the random-weight fixture of tests/tf_models.rs,
/// widths / 16) exports like our own models: the ONNX graph gives its embeddings in tract,
/// the `.safetensors` holds its weights exactly (architecture read from the network).
#[test]
fn tensorflow_checkpoint_exports() {
    let tf = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tf/tiny-128");
    let d = tempfile::tempdir().unwrap();
    let onnx = d.path().join("tf.onnx");
    let (code, so, se) = export(&tf, &onnx, &[]);
    assert_eq!(code, Some(0), "{so}\n{se}");
    let worst = onnx_matches_ours(&onnx, &tf, 160, &[1, 2]);
    eprintln!("TF checkpoint: ONNX in tract vs ours, smallest cosine {worst:.8}");
    let st = d.path().join("tf.safetensors");
    assert_eq!(export(&tf, &st, &[]).0, Some(0));
    let device = Device::flex();
    assert_eq!(weights(&load_model(&st, &device).unwrap().0), weights(&load_model(&tf, &device).unwrap().0));
}
