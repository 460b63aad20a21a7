//! Helpers shared by the integration tests (each test file that needs them says `mod common;`).
#![allow(dead_code)]

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use facenet::util::cache::testdata_dir;

/// The sample photos of the insightface 2.1 wheel, fetched once into the cache.
pub fn photos() -> Option<&'static Path> {
    static P: OnceLock<Option<PathBuf>> = OnceLock::new();
    P.get_or_init(|| {
        let dir = testdata_dir().join("insightface-2.1");
        if dir.join("t1.jpg").is_file() && dir.join("Tom_Hanks_54745.png").is_file() {
            return Some(dir);
        }
        let tmp = testdata_dir().join(format!(".download-{}", std::process::id()));
        fs::create_dir_all(&tmp).ok()?;
        let ok = Command::new("python3")
            .args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q", "--disable-pip-version-check", "-d"])
            .arg(&tmp)
            .arg("insightface==2.1")
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        let result = (|| {
            if !ok {
                return None;
            }
            let wheel = fs::read_dir(&tmp).ok()?.flatten().map(|e| e.path()).find(|p| p.extension().is_some_and(|e| e == "whl"))?;
            let mut zip = zip::ZipArchive::new(fs::File::open(wheel).ok()?).ok()?;
            for i in 0..zip.len() {
                let mut f = zip.by_index(i).ok()?;
                let name = f.name().to_string();
                if let Some(file) = name.strip_prefix("insightface/data/images/") {
                    let mut bytes = Vec::new();
                    f.read_to_end(&mut bytes).ok()?;
                    facenet::util::atomic::write_atomic(&dir.join(file), &bytes).ok()?;
                }
            }
            Some(dir.clone())
        })();
        let _ = fs::remove_dir_all(&tmp);
        if result.is_none() {
            eprintln!("SKIPPED: sample photos unavailable (python3 -m pip download insightface==2.1 failed)");
        }
        result
    })
    .as_deref()
}

/// CRC-32 (PNG chunks), for tests that patch image headers.
pub fn crc32(data: &[u8]) -> u32 {
    let mut c = 0xffff_ffffu32;
    for &b in data {
        c ^= b as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 { 0xedb8_8320 ^ (c >> 1) } else { c >> 1 };
        }
    }
    !c
}

/// The `facenet` binary of this build, progress bars off, the device its default (not
/// `$FACENET_DEVICE`), run from the repository root.
pub fn facenet() -> assert_cmd::Command {
    let mut c = assert_cmd::Command::cargo_bin("facenet").unwrap();
    c.env("FACENET_NO_PROGRESS", "1").env_remove("FACENET_DEVICE").current_dir(env!("CARGO_MANIFEST_DIR"));
    c
}

/// Success, stdout and stderr of a run.
pub fn output(c: &mut assert_cmd::Command) -> (bool, String, String) {
    let out = c.output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Stdout and stderr of a run that must succeed.
pub fn run_ok(c: &mut assert_cmd::Command) -> (String, String) {
    let (ok, stdout, stderr) = output(c);
    assert!(ok, "failed: {c:?}\n{stdout}\n{stderr}");
    (stdout, stderr)
}

/// A tiny synthetic dataset in `dir`: 8 identities x 5 images of 40 px for training, 4
/// held-out identities x 3 images, 2 folds x (3 + 3) pairs.
pub fn synth_tiny(dir: &Path) {
    let args = "--identities 8 --images_per_identity 5 --image_size 40 --pairs_identities 4 --pairs_images_per_identity 3 \
                --pairs_folds 2 --pairs_per_fold 3 --no_baseline --threads 1";
    run_ok(facenet().arg("synth").arg(dir).args(args.split_whitespace()));
}

/// The one entry of `dir` (a run's log or model folder).
pub fn only_subdir(dir: &Path) -> PathBuf {
    let mut v: Vec<PathBuf> = fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(v.len(), 1, "{v:?}");
    v.pop().unwrap()
}

/// The rows of a CSV file (no quoting: our statistics files).
pub fn csv(path: &Path) -> Vec<Vec<String>> {
    fs::read_to_string(path).unwrap().lines().map(|l| l.split(',').map(str::to_string).collect()).collect()
}

/// A small checkpoint's files: `model.safetensors` bytes of a fresh small network (16-d, 3
/// classes) and the `model.json` that describes it.
pub fn small_checkpoint_files() -> (Vec<u8>, serde_json::Value) {
    use burn::store::{ModuleSnapshot, SafetensorsStore};
    use facenet::model::load::{ModelFile, ModelMeta, FORMAT, MODEL_FILE};
    let d = tempfile::tempdir().unwrap();
    let config = facenet::model::inception_resnet_v1::InceptionResnetV1Config::small(16, 1.0, 3);
    let weights = d.path().join(MODEL_FILE);
    config.init(&burn::tensor::Device::flex()).save_into(&mut SafetensorsStore::from_file(&weights).overwrite(true)).unwrap();
    let meta = ModelMeta {
        model_def: "inception_resnet_v1_small".into(),
        embedding_size: 16,
        image_size: 32,
        standardization: facenet::data::preprocess::Standardization::PerImage,
        num_classes: 3,
    };
    let mf = ModelFile { format: FORMAT.into(), meta, config, epoch: 1, global_step: 10 };
    (fs::read(weights).unwrap(), serde_json::to_value(&mf).unwrap())
}

/// Exit status, stdout and stderr of a run that must not have crashed: no panic (101), no
/// death by a signal (an allocation abort), no "panicked" in its output.
pub fn run_no_crash(c: &mut assert_cmd::Command) -> (Option<i32>, String, String) {
    let out = c.output().unwrap();
    let (so, se) = (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
    let code = out.status.code();
    assert!(code.is_some() && code != Some(101) && !se.contains("panicked"), "crashed ({:?}): {c:?}\n{so}\n{se}", out.status);
    (code, so, se)
}

/// Peak resident memory of the largest child process waited for so far, in MiB.
pub fn children_peak_rss_mib() -> f64 {
    // SAFETY: getrusage fills the struct it is given; all-zero is a valid `rusage`.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut u) };
    u.ru_maxrss as f64 / 1024.0
}
