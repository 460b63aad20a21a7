//! The reference's TensorFlow models, loaded: checkpoints and frozen graphs made by the
//! reference's own network code in TensorFlow (tools/make_tf_fixture.py: random weights, the
//! layer widths divided by 16 to keep the files small, every name, layer, padding and repeat
//! the reference's), and TensorFlow's embeddings of four real aligned crops; ours must agree
//! (cosine >= 0.9999) from the checkpoint folder, the checkpoint prefix and the frozen graph,
//! for a 128-d model with a Logits layer and a 512-d one without. Then damaged and foreign
//! files: clear errors naming the file and the tensor, no panic.

use std::fs;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use facenet::model::load::{load_inference_model, load_pretrained};
use facenet::model::tf::{self, find_tf_model, TfModelPath};
use facenet::model::InceptionResnetV1Config;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tf")
}

fn facenet() -> Command {
    let mut c = Command::cargo_bin("facenet").unwrap();
    c.env("FACENET_NO_PROGRESS", "1");
    c
}

/// The fixture model `name` copied into `dir` (the frozen graph unzipped).
fn model_copy(name: &str, dir: &Path) -> PathBuf {
    let to = dir.join(name);
    fs::create_dir_all(&to).unwrap();
    for e in fs::read_dir(fixtures().join(name)).unwrap() {
        let p = e.unwrap().path();
        let file = p.file_name().unwrap().to_str().unwrap().to_string();
        if let Some(pb) = file.strip_suffix(".gz") {
            let mut out = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(fs::File::open(&p).unwrap()), &mut out).unwrap();
            fs::write(to.join(pb), out).unwrap();
        } else {
            fs::copy(&p, to.join(file)).unwrap();
        }
    }
    to
}

/// TensorFlow's embeddings of the crops (rows in the crops' name order).
fn tf_embeddings(name: &str) -> (usize, Vec<Vec<f32>>) {
    let text = fs::read_to_string(fixtures().join(name).join("embeddings.json")).unwrap();
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    let rows = doc["embeddings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect())
        .collect();
    (doc["image_size"].as_u64().unwrap() as usize, rows)
}

/// `facenet embed` of the crops with `model`: rows in the crops' name order.
fn our_embeddings(model: &Path, image_size: usize, out_dir: &Path) -> Vec<Vec<f32>> {
    let out = out_dir.join(format!("emb-{}.npy", model.file_name().unwrap().to_string_lossy()));
    let o = facenet()
        .arg("embed")
        .arg(fixtures().join("crops"))
        .arg("--model")
        .arg(model)
        .args(["--image_size", &image_size.to_string(), "--use_fixed_image_standardization", "--output"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "embed with {}: {}", model.display(), String::from_utf8_lossy(&o.stderr));
    let bytes = fs::read(&out).unwrap();
    let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    let values: Vec<f32> = npy.into_vec().unwrap();
    let paths = fs::read_to_string(out.with_extension("txt")).unwrap();
    let names: Vec<&str> = paths.lines().map(|l| l.rsplit('/').next().unwrap()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "embed keeps the crops' order");
    values.chunks(shape[1]).map(|r| r.to_vec()).collect()
}

fn assert_same_embeddings(ours: &[Vec<f32>], theirs: &[Vec<f32>], what: &str) {
    assert_eq!(ours.len(), theirs.len(), "{what}");
    let mut worst = 1f64;
    for (i, (a, b)) in ours.iter().zip(theirs).enumerate() {
        assert_eq!(a.len(), b.len(), "{what}: embedding size");
        let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
        let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
        let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
        let cos = dot / (na * nb);
        assert!(cos >= 0.9999, "{what}: crop {i}: cosine {cos} with TensorFlow's embedding");
        worst = worst.min(cos);
    }
    eprintln!("{what}: lowest cosine with TensorFlow's embeddings {worst:.7}");
}

#[test]
fn checkpoints_and_frozen_graphs_give_tensorflows_embeddings() {
    let tmp = tempfile::tempdir().unwrap();
    let m128 = model_copy("tiny-128", tmp.path());
    let m512 = model_copy("tiny-512", tmp.path());
    let (size, want128) = tf_embeddings("tiny-128");
    let (_, want512) = tf_embeddings("tiny-512");
    // the folder (its `checkpoint` file names another machine's path: the file name counts)
    assert_same_embeddings(&our_embeddings(&m128, size, tmp.path()), &want128, "tiny-128 folder");
    // the prefix, and the .index file
    let prefix = m128.join("model-tiny-128.ckpt-275");
    assert_same_embeddings(&our_embeddings(&prefix, size, tmp.path()), &want128, "tiny-128 checkpoint prefix");
    // the frozen graph
    let pb = m128.join("tiny-128.pb");
    assert_same_embeddings(&our_embeddings(&pb, size, tmp.path()), &want128, "tiny-128.pb");
    // a 512-d model without a Logits layer, found by its step number (no `checkpoint` file)
    fs::remove_file(m512.join("checkpoint")).unwrap();
    assert_same_embeddings(&our_embeddings(&m512, size, tmp.path()), &want512, "tiny-512 folder");

    // what the paths designate
    assert_eq!(find_tf_model(&m128), Some(TfModelPath::Checkpoint(prefix.clone())));
    assert_eq!(find_tf_model(&prefix.with_extension("ckpt-275.index")), Some(TfModelPath::Checkpoint(prefix.clone())));
    assert_eq!(find_tf_model(&pb), Some(TfModelPath::Frozen(pb.clone())));
    assert_eq!(find_tf_model(tmp.path()), None);

    // the meta: the reference's input size and standardisation default; sizes from the shapes
    let device = burn::tensor::Device::flex();
    let (_, meta) = load_inference_model(&m128, &device).unwrap();
    assert_eq!((meta.embedding_size, meta.image_size, meta.num_classes), (128, 160, 10));
    // (freezing keeps what the embeddings need: no Logits layer)
    let (_, meta) = load_inference_model(&pb, &device).unwrap();
    assert_eq!((meta.embedding_size, meta.num_classes), (128, 0));
    let (_, meta) = load_inference_model(&m512, &device).unwrap();
    assert_eq!((meta.embedding_size, meta.num_classes), (512, 0));

    // --pretrained_model: into the network of the same architecture, Logits layer included
    let src = tf::open(&TfModelPath::Checkpoint(prefix.clone())).unwrap();
    let config: InceptionResnetV1Config = tf::infer_config(src.as_ref()).unwrap();
    assert_eq!((config.arch.block35_repeats, config.arch.block17_repeats, config.arch.block8_repeats), (5, 10, 5));
    assert_eq!(config.arch.stem, [2, 2, 4, 5, 12, 16]);
    let mut net = config.init(&device.clone().autodiff());
    let msg = load_pretrained(&mut net, &m128).unwrap();
    assert!(msg.contains("TensorFlow checkpoint") && !msg.contains("fresh"), "{msg}");
    // into the full network: which tensor does not fit, and why
    let mut full = InceptionResnetV1Config::new().with_num_classes(10).init(&device);
    let e = format!("{:#}", load_pretrained(&mut full, &pb).unwrap_err());
    assert!(e.contains("tiny-128.pb") && e.contains("Conv2d_1a_3x3/weights") && e.contains("--model_def"), "{e}");
    let mut wide = InceptionResnetV1Config::new().with_embedding_size(512).init(&device);
    let e = format!("{:#}", load_pretrained(&mut wide, &m128).unwrap_err());
    assert!(e.contains("embedding size 128"), "{e}");
}

#[test]
fn validate_and_compare_take_tensorflow_models() {
    let tmp = tempfile::tempdir().unwrap();
    let m128 = model_copy("tiny-128", tmp.path());
    let pb = m128.join("tiny-128.pb");
    let crops = fixtures().join("crops");
    let o = facenet()
        .arg("compare")
        .arg(&pb)
        .arg(crops.join("t1_0.png"))
        .arg(crops.join("t1_1.png"))
        .args(["--image_size", "80", "--use_fixed_image_standardization"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // the cosine TensorFlow's embeddings give, in the distance matrix compare prints
    let (_, want) = tf_embeddings("tiny-128");
    let d: f32 = want[1].iter().zip(&want[2]).map(|(a, b)| (a - b) * (a - b)).sum::<f32>().sqrt();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains(&format!("{d:.4}")), "distance {d:.4} not in:\n{out}");

    // validate on a small generated set, with the reference's positional arguments
    let data = tmp.path().join("syn");
    let o = facenet()
        .arg("synth")
        .arg(&data)
        .args(["--identities", "6", "--images_per_identity", "3", "--image_size", "40", "--pairs_identities", "6"])
        .args(["--pairs_folds", "10", "--pairs_per_fold", "2", "--no_baseline"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = facenet()
        .arg("validate")
        .arg(data.join("pairs"))
        .arg(&m128)
        .arg("--lfw_pairs")
        .arg(data.join("pairs.txt"))
        .args(["--image_size", "80", "--use_fixed_image_standardization"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("Accuracy"), "{}", String::from_utf8_lossy(&o.stdout));
}

/// The error of `facenet embed` with `model`: it fails, names `names`, does not panic.
fn embed_error(model: &Path, names: &[&str]) -> String {
    let o = facenet()
        .arg("embed")
        .arg(fixtures().join("crops"))
        .arg("--model")
        .arg(model)
        .args(["--image_size", "80"])
        .arg("-o")
        .arg(model.with_extension("npy"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(!o.status.success(), "{} loaded", model.display());
    assert_ne!(o.status.code(), Some(101), "panic: {err}");
    assert!(!err.contains("panicked"), "{err}");
    for n in names {
        assert!(err.contains(n), "{n} not in: {err}");
    }
    err
}

#[test]
fn damaged_and_foreign_models_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let m = model_copy("tiny-128", tmp.path());
    fs::remove_file(m.join("tiny-128.pb")).unwrap();
    let data = m.join("model-tiny-128.ckpt-275.data-00000-of-00001");
    let bytes = fs::read(&data).unwrap();

    // a truncated shard: the last tensors lie past its end
    fs::write(&data, &bytes[..bytes.len() / 2]).unwrap();
    let e = embed_error(&m, &["model-tiny-128.ckpt-275.data-00000-of-00001", "InceptionResnetV1/", "truncated"]);
    assert!(e.contains("tensor "), "{e}");

    // one flipped byte: the tensor's CRC-32C
    let mut flipped = bytes.clone();
    flipped[1000] ^= 0x10;
    fs::write(&data, &flipped).unwrap();
    embed_error(&m, &["data-00000-of-00001", "tensor InceptionResnetV1/", "checksum mismatch"]);
    fs::write(&data, &bytes).unwrap();

    // a damaged index: the table's block checksum, or its footer
    let index = m.join("model-tiny-128.ckpt-275.index");
    let ibytes = fs::read(&index).unwrap();
    let mut bad = ibytes.clone();
    bad[100] ^= 0x01;
    fs::write(&index, &bad).unwrap();
    embed_error(&m, &["model-tiny-128.ckpt-275.index", "checksum"]);
    fs::write(&index, &ibytes[..ibytes.len() - 10]).unwrap();
    embed_error(&m, &["model-tiny-128.ckpt-275.index", "not a TensorFlow checkpoint index"]);
    fs::write(&index, &ibytes).unwrap();
    // the shard missing altogether
    fs::remove_file(&data).unwrap();
    embed_error(&m, &["model-tiny-128.ckpt-275.data-00000-of-00001"]);

    // a checkpoint of another network: which variables are missing
    let other = model_copy("other-net", tmp.path());
    let e = embed_error(
        &other,
        &["model-other.ckpt-1.index", "not the reference's Inception-ResNet-v1", "InceptionResnetV1/Conv2d_1a_3x3/weights"],
    );
    assert!(e.contains("SqueezeNet/"), "the file's own names: {e}");

    // a .pb without the network's nodes, and one that is not a GraphDef
    use prost::Message;
    let mut node = tf::proto::NodeDef { name: "InceptionResnetV1/Conv2d_1a_3x3/weights".into(), op: "Const".into(), ..Default::default() };
    let shape =
        tf::proto::TensorShapeProto { dim: [3, 3, 3, 2].iter().map(|&size| tf::proto::Dim { size }).collect(), unknown_rank: false };
    let value = tf::proto::TensorProto { dtype: 1, tensor_shape: Some(shape), float_val: vec![0.5], ..Default::default() };
    node.attr.insert("value".into(), tf::proto::AttrValue { tensor: Some(value), r#type: None });
    let graph = tf::proto::GraphDef {
        node: vec![node, tf::proto::NodeDef { name: "input".into(), op: "Placeholder".into(), ..Default::default() }],
    };
    let pb = tmp.path().join("partial.pb");
    fs::write(&pb, graph.encode_to_vec()).unwrap();
    let e = embed_error(&pb, &["partial.pb", "InceptionResnetV1/Conv2d_1a_3x3/BatchNorm/beta"]);
    assert!(e.contains("missing"), "{e}");
    let junk = tmp.path().join("junk.pb");
    fs::write(&junk, b"\xff\xff\xff\xff not a graph").unwrap();
    embed_error(&junk, &["junk.pb", "not a TensorFlow GraphDef"]);
    // a Const of the right name and the wrong shape
    let mut node = graph.node[0].clone();
    node.attr.get_mut("value").unwrap().tensor.as_mut().unwrap().tensor_shape.as_mut().unwrap().dim[3].size = 7;
    let pb = tmp.path().join("wrong.pb");
    fs::write(&pb, tf::proto::GraphDef { node: vec![node] }.encode_to_vec()).unwrap();
    // (the shape says 7 output channels: the network is built with 7, so the error is a missing tensor)
    embed_error(&pb, &["wrong.pb", "missing"]);
}
