//! Property tests of the model-file parsers, in-process (proptest, [`CASES`] cases per
//! property, no failure files): our checkpoints' `model.safetensors` (bytes anywhere, the
//! header's length prefix, and headers whose JSON lies about dtypes, shapes and offsets),
//! facenet-pytorch `.pt` files (the zip around, and the pickle inside re-zipped so that it
//! reaches the unpickler) and the reference's TensorFlow checkpoints (`.index` table and
//! `.data` shard). Every mutated file either loads or gives an error naming it; none panics,
//! none aborts on an allocation.

use std::fs;
use std::io::{Cursor, Read, Write};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use burn::tensor::Device;
use facenet::model::export::pytorch::{pt_bytes, state_dict};
use facenet::model::inception_resnet_v1::InceptionResnetV1Config;
use facenet::model::load::{load_inference_model, load_pytorch_weights, MODEL_FILE, MODEL_JSON};
use proptest::prelude::*;

mod common;
use common::small_checkpoint_files;

/// Cases per property.
const CASES: u32 = 1000;

/// Runs `load` and checks that it returned (no panic) and that an error names `file`.
fn must_not_panic<T>(file: &str, load: impl FnOnce() -> anyhow::Result<T>) -> Result<(), TestCaseError> {
    match catch_unwind(AssertUnwindSafe(load)) {
        Err(p) => {
            let msg = p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default();
            Err(TestCaseError::fail(format!("panicked: {msg}")))
        }
        Ok(Err(e)) => {
            let text = format!("{e:#}");
            if std::env::var_os("FACENET_FUZZ_VERBOSE").is_some() {
                eprintln!("outcome {file}: error: {}", text.chars().take(150).collect::<String>());
            }
            prop_assert!(text.contains(file), "the error does not name {file}: {text}");
            Ok(())
        }
        Ok(Ok(_)) => {
            if std::env::var_os("FACENET_FUZZ_VERBOSE").is_some() {
                eprintln!("outcome {file}: loaded");
            }
            Ok(())
        }
    }
}

/// `base` with bytes overwritten at `edits` (positions modulo `span`, or the length) and cut
/// to `cut` bytes (modulo its length + 1).
fn mutate(base: &[u8], edits: &[(usize, u8)], span: usize, cut: usize) -> Vec<u8> {
    let mut v = base.to_vec();
    let n = v.len().min(span.max(1));
    for &(at, byte) in edits {
        if !v.is_empty() {
            v[at % n] = byte;
        }
    }
    v.truncate(cut % (base.len() + 1));
    v
}

/// A small checkpoint (`model.safetensors` bytes, `model.json` text).
fn checkpoint() -> &'static (Vec<u8>, String) {
    static C: OnceLock<(Vec<u8>, String)> = OnceLock::new();
    C.get_or_init(|| {
        let (weights, json) = small_checkpoint_files();
        (weights, json.to_string())
    })
}

/// Loads a checkpoint folder holding `weights` as its `model.safetensors`.
fn load_checkpoint(weights: &[u8]) -> Result<(), TestCaseError> {
    let d = tempfile::tempdir().unwrap();
    let ckpt = d.path().join("ckpt-000001");
    fs::create_dir_all(&ckpt).unwrap();
    fs::write(ckpt.join(MODEL_FILE), weights).unwrap();
    fs::write(ckpt.join(MODEL_JSON), &checkpoint().1).unwrap();
    must_not_panic(MODEL_FILE, || load_inference_model(&ckpt, &Device::flex()))
}

/// The safetensors header: (length prefix + JSON end, parsed JSON).
fn header(bytes: &[u8]) -> (usize, serde_json::Map<String, serde_json::Value>) {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    (8 + n, serde_json::from_slice(&bytes[8..8 + n]).unwrap())
}

/// A facenet-pytorch state dict of the small network (same key names as the published one).
fn pt_file() -> &'static Vec<u8> {
    static P: OnceLock<Vec<u8>> = OnceLock::new();
    P.get_or_init(|| {
        let model = InceptionResnetV1Config::small(16, 1.0, 0).init(&Device::flex());
        pt_bytes(&state_dict(&model).unwrap()).unwrap()
    })
}

/// The `.pt` zip with its `data.pkl` replaced by `pickle` (stored, as PyTorch writes it).
fn with_pickle(pt: &[u8], pickle: &[u8]) -> Vec<u8> {
    let mut src = zip::ZipArchive::new(Cursor::new(pt)).unwrap();
    let mut out = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let opt = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for i in 0..src.len() {
        let mut f = src.by_index(i).unwrap();
        let name = f.name().to_string();
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes).unwrap();
        out.start_file(name.clone(), opt).unwrap();
        out.write_all(if name.ends_with("data.pkl") { pickle } else { &bytes }).unwrap();
    }
    out.finish().unwrap().into_inner()
}

fn pickle_of(pt: &[u8]) -> Vec<u8> {
    let mut z = zip::ZipArchive::new(Cursor::new(pt)).unwrap();
    let name = z.file_names().find(|n| n.ends_with("data.pkl")).unwrap().to_string();
    let mut bytes = Vec::new();
    z.by_name(&name).unwrap().read_to_end(&mut bytes).unwrap();
    bytes
}

fn load_pt(bytes: &[u8]) -> Result<(), TestCaseError> {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("hostile.pt");
    fs::write(&p, bytes).unwrap();
    let mut model = InceptionResnetV1Config::small(16, 1.0, 0).init(&Device::flex());
    must_not_panic("hostile.pt", || load_pytorch_weights(&mut model, &p))
}

/// The committed TF fixture (the reference's network at 1/16 width): its `.index` and `.data`.
fn tf_files() -> &'static (PathBuf, Vec<u8>, Vec<u8>) {
    static T: OnceLock<(PathBuf, Vec<u8>, Vec<u8>)> = OnceLock::new();
    T.get_or_init(|| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tf/tiny-128");
        let file = |ext: &str| {
            let p = fs::read_dir(&dir).unwrap().flatten().map(|e| e.path()).find(|p| p.to_string_lossy().ends_with(ext)).unwrap();
            (p.clone(), fs::read(p).unwrap())
        };
        let (index_path, index) = file(".index");
        let (_, data) = file(".data-00000-of-00001");
        (index_path, index, data)
    })
}

fn load_tf(index: &[u8], data: &[u8]) -> Result<(), TestCaseError> {
    let d = tempfile::tempdir().unwrap();
    let prefix = d.path().join("model-hostile.ckpt-1");
    fs::write(d.path().join("model-hostile.ckpt-1.index"), index).unwrap();
    fs::write(d.path().join("model-hostile.ckpt-1.data-00000-of-00001"), data).unwrap();
    must_not_panic("model-hostile.ckpt-1", || load_inference_model(&prefix, &Device::flex()))
}

/// A JSON value a lying header may carry in place of a shape, an offset pair or a dtype.
fn lie() -> impl Strategy<Value = serde_json::Value> {
    prop_oneof![
        prop::collection::vec(prop_oneof![Just(0u64), Just(1), 1..100_000u64, Just(u32::MAX as u64), Just(u64::MAX)], 0..5)
            .prop_map(|v| serde_json::json!(v)),
        prop::sample::select(vec!["F32", "F16", "BF16", "F64", "I64", "U8", "BOOL", "F8_E4M3", "X"]).prop_map(|s| serde_json::json!(s)),
        any::<i64>().prop_map(|i| serde_json::json!(i)),
        Just(serde_json::Value::Null),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, failure_persistence: None, ..ProptestConfig::default() })]

    /// Bytes overwritten in the header (most often) or anywhere, and truncation.
    #[test]
    fn safetensors_bytes(edits in prop::collection::vec((any::<usize>(), any::<u8>()), 0..8), in_header in any::<bool>(), cut in any::<usize>()) {
        let base = &checkpoint().0;
        let span = if in_header { header(base).0 + 16 } else { base.len() };
        let cut = if cut % 4 == 0 { cut } else { base.len() };
        load_checkpoint(&mutate(base, &edits, span, cut))?;
    }

    /// A header length prefix that lies (past the end, zero, huge, off by a few).
    #[test]
    fn safetensors_length_prefix(len in prop_oneof![any::<u64>(), 0..64u64, Just(u64::MAX)], delta in -8i64..8) {
        let mut bytes = checkpoint().0.clone();
        let claimed = if delta != 0 { (header(&bytes).0 as i64 - 8 + delta) as u64 } else { len };
        bytes[..8].copy_from_slice(&claimed.to_le_bytes());
        load_checkpoint(&bytes)?;
    }

    /// A well-formed header whose JSON lies about one tensor: its dtype, shape or offsets.
    #[test]
    fn safetensors_lying_header(which in any::<prop::sample::Index>(), field in prop::sample::select(vec!["dtype", "shape", "data_offsets"]), value in lie()) {
        let base = &checkpoint().0;
        let (end, mut json) = header(base);
        let keys: Vec<String> = json.keys().filter(|k| *k != "__metadata__").cloned().collect();
        let key = which.get(&keys).clone();
        json.get_mut(&key).unwrap()[field] = value;
        let text = serde_json::to_vec(&json).unwrap();
        let mut bytes = (text.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(&text);
        bytes.extend_from_slice(&base[end..]);
        load_checkpoint(&bytes)?;
    }

    /// The `.pt` zip damaged (directory, headers, CRCs, truncation).
    #[test]
    fn pytorch_zip(edits in prop::collection::vec((any::<usize>(), any::<u8>()), 1..8), cut in any::<usize>()) {
        let base = pt_file();
        let cut = if cut % 4 == 0 { cut } else { base.len() };
        load_pt(&mutate(base, &edits, base.len(), cut))?;
    }

    /// A valid zip around a hostile pickle (opcodes, lengths, storage keys, shapes, strides).
    #[test]
    fn pytorch_pickle(edits in prop::collection::vec((any::<usize>(), any::<u8>()), 1..6), cut in any::<usize>()) {
        let base = pt_file();
        let pickle = pickle_of(base);
        let cut = if cut % 4 == 0 { cut } else { pickle.len() };
        load_pt(&with_pickle(base, &mutate(&pickle, &edits, pickle.len(), cut)))?;
    }

    /// The reference's checkpoint: its `.index` table damaged (blocks, footer, entries), its
    /// `.data` shard damaged or cut.
    #[test]
    fn tensorflow_checkpoint(edits in prop::collection::vec((any::<usize>(), any::<u8>()), 1..6), cut in any::<usize>(), in_index in any::<bool>()) {
        let (_, index, data) = tf_files();
        let cut_at = |len: usize| if cut % 4 == 0 { cut } else { len };
        if in_index {
            load_tf(&mutate(index, &edits, index.len(), cut_at(index.len())), data)?;
        } else {
            load_tf(index, &mutate(data, &edits, data.len(), cut_at(data.len())))?;
        }
    }
}

/// The unmutated files load (so the properties above start from files that work).
#[test]
fn the_unmutated_files_load() {
    let d = tempfile::tempdir().unwrap();
    let ckpt = d.path().join("ckpt-000001");
    fs::create_dir_all(&ckpt).unwrap();
    fs::write(ckpt.join(MODEL_FILE), &checkpoint().0).unwrap();
    fs::write(ckpt.join(MODEL_JSON), &checkpoint().1).unwrap();
    load_inference_model(&ckpt, &Device::flex()).unwrap();
    let p = d.path().join("ok.pt");
    fs::write(&p, with_pickle(pt_file(), &pickle_of(pt_file()))).unwrap();
    load_pytorch_weights(&mut InceptionResnetV1Config::small(16, 1.0, 0).init(&Device::flex()), &p).unwrap();
    let (index_path, _, _) = tf_files();
    load_inference_model(&PathBuf::from(index_path.to_string_lossy().trim_end_matches(".index")), &Device::flex()).unwrap();
}
