//! Training that never loses work (issue #21, items 1 and 2), as a user meets it: a learning
//! rate that diverges (refused steps, rollback to the last checkpoint with a lower rate, or a
//! clear stop; no non-finite checkpoint ever written), and SIGTERM in the middle of an epoch
//! (exit 0, a checkpoint, `--resume` ends exactly like the uninterrupted run).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

mod common;
use common::{csv, facenet, only_subdir, output, run_ok, synth_tiny as synth};

/// The small network on the synthetic data, RMSPROP, dropout (keep 0.8), augmentation.
fn args(data: &Path, logs: &Path, models: &Path, epoch_size: usize) -> Vec<String> {
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let mut v: Vec<String> = vec!["train".into(), "--data_dir".into(), s(&data.join("train"))];
    v.extend(["--logs_base_dir".into(), s(logs), "--models_base_dir".into(), s(models)]);
    v.extend(["--epoch_size".into(), epoch_size.to_string()]);
    v.extend(
        [
            "--model_def",
            "inception_resnet_v1_small",
            "--image_size",
            "32",
            "--embedding_size",
            "16",
            "--batch_size",
            "8",
            "--optimizer",
            "RMSPROP",
            "--keep_probability",
            "0.8",
            "--random_crop",
            "--random_flip",
            "--weight_decay",
            "1e-4",
            "--center_loss_factor",
            "0.01",
            "--validation_set_split_ratio",
            "0.2",
            "--nrof_preprocess_threads",
            "2",
            "--seed",
            "5",
            "--device",
            "cpu",
        ]
        .map(String::from),
    );
    v
}

/// Every tensor of a checkpoint file is finite.
fn assert_finite_checkpoint(ckpt: &Path) {
    for file in ["model.safetensors", "train_state.safetensors"] {
        let (tensors, _) = facenet::train::tensor_file::decode(&fs::read(ckpt.join(file)).unwrap()).unwrap();
        assert!(!tensors.is_empty());
        for (name, (_, values)) in &tensors {
            assert!(values.iter().all(|v| v.is_finite()), "{}: {name} has non-finite values", ckpt.join(file).display());
        }
    }
}

#[test]
fn a_diverging_learning_rate_rolls_back_or_stops_and_never_saves_non_finite_values() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("syn");
    synth(&data);
    // epoch 1 trains normally; epoch 2's rate makes the network blow up within a step or two
    let schedule = tmp.path().join("schedule.txt");
    fs::write(&schedule, "0: 0.01\n2: 1e30\n").unwrap();
    let with_schedule = |logs: &Path, models: &Path| {
        let mut a = args(&data, logs, models, 3);
        a.extend(
            ["--learning_rate", "-1", "--learning_rate_schedule_file", schedule.to_str().unwrap(), "--max_nrof_epochs", "2"]
                .map(String::from),
        );
        a.extend(["--max_nonfinite_steps", "2"].map(String::from));
        a
    };

    // A rollback with the rate multiplied by 1e-31 (1e30 -> 0.1): the run recovers and ends
    let (logs, models) = (tmp.path().join("a/logs"), tmp.path().join("a/models"));
    let mut a = with_schedule(&logs, &models);
    a.extend(["--nonfinite_lr_factor", "1e-31"].map(String::from));
    let (_, stderr) = run_ok(facenet().args(&a));
    assert!(stderr.contains("not applied: non-finite"), "{stderr}");
    assert!(stderr.contains("rolling back to") && stderr.contains("ckpt-000001"), "{stderr}");
    let run = only_subdir(&models);
    let ckpt2 = run.join("ckpt-000002");
    assert_finite_checkpoint(&run.join("ckpt-000001"));
    assert_finite_checkpoint(&ckpt2);
    let state: serde_json::Value = serde_json::from_str(&fs::read_to_string(ckpt2.join("train_state.json")).unwrap()).unwrap();
    let factor = state["learning_rate_factor"].as_f64().unwrap();
    assert!((factor - 1e-31).abs() < 1e-40, "{state}");
    let log = only_subdir(&logs);
    let steps = csv(&log.join("steps.csv"));
    assert_eq!(steps.len(), 1 + 6, "epoch 1's three steps, epoch 2's three after the rollback: {steps:?}");
    let step_numbers: Vec<&str> = steps[1..].iter().map(|r| r[0].as_str()).collect();
    assert_eq!(step_numbers, ["1", "2", "3", "4", "5", "6"]);
    assert!(steps[1..].iter().all(|r| r[3].parse::<f64>().unwrap().is_finite()), "{steps:?}");
    let epochs = csv(&log.join("epochs.csv"));
    assert_eq!(epochs.len(), 3);
    assert!(epochs[2][1].parse::<f64>().unwrap().is_finite());

    // A again, its steps read back 2 at a time: windows with non-finite steps are undone and
    // run one step at a time, so the same steps are refused and the run ends the same
    let (logs_w, models_w) = (tmp.path().join("w/logs"), tmp.path().join("w/models"));
    let mut w = with_schedule(&logs_w, &models_w);
    w.extend(["--nonfinite_lr_factor", "1e-31", "--sync_every", "2"].map(String::from));
    let (_, stderr_w) = run_ok(facenet().args(&w));
    let warnings = |s: &str| s.lines().filter(|l| l.starts_with("warning: step")).map(String::from).collect::<Vec<_>>();
    assert!(!warnings(&stderr).is_empty());
    assert_eq!(warnings(&stderr_w), warnings(&stderr), "{stderr_w}");
    let steps_w = csv(&only_subdir(&logs_w).join("steps.csv"));
    assert_eq!(steps_w.len(), steps.len());
    for (a, b) in steps.iter().zip(&steps_w) {
        assert_eq!(a[..10], b[..10]);
    }
    assert_same_checkpoint(&run, &only_subdir(&models_w), "ckpt-000002");

    // B: no rollback (factor 0): a clear stop naming the checkpoint and the resume command
    let (logs, models) = (tmp.path().join("b/logs"), tmp.path().join("b/models"));
    let mut a = with_schedule(&logs, &models);
    a.extend(["--nonfinite_lr_factor", "0"].map(String::from));
    let (ok, _, stderr) = output(facenet().args(&a));
    assert!(!ok, "{stderr}");
    assert!(stderr.contains("stopping: 2 consecutive steps had non-finite values"), "{stderr}");
    assert!(stderr.contains("facenet train --resume"), "{stderr}");
    let run = only_subdir(&models);
    assert_finite_checkpoint(&run.join("ckpt-000001"));
    assert!(!run.join("ckpt-000002").exists());
}

#[cfg(unix)]
#[test]
fn sigterm_mid_epoch_checkpoints_exits_0_and_resumes_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("syn");
    synth(&data);
    let (epoch_size, epochs) = (12, "2");

    // A: uninterrupted
    let (logs_a, models_a) = (tmp.path().join("a/logs"), tmp.path().join("a/models"));
    let mut a = args(&data, &logs_a, &models_a, epoch_size);
    a.extend(["--learning_rate", "0.01", "--max_nrof_epochs", epochs].map(String::from));
    run_ok(facenet().args(&a));

    // B: SIGTERM once the first steps are logged, then --resume
    let (logs_b, models_b) = (tmp.path().join("b/logs"), tmp.path().join("b/models"));
    let mut b = args(&data, &logs_b, &models_b, epoch_size);
    b.extend(["--learning_rate", "0.01", "--max_nrof_epochs", epochs].map(String::from));
    // and reads its steps back 3 at a time (the resumed run 5 at a time): the same run
    b.extend(["--sync_every", "3"].map(String::from));
    let exe = assert_cmd::cargo::cargo_bin("facenet");
    let child = std::process::Command::new(exe)
        .args(&b)
        .env("FACENET_NO_PROGRESS", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let steps_logged = || -> usize {
        fs::read_dir(&logs_b)
            .ok()
            .and_then(|mut d| d.next())
            .and_then(|e| fs::read_to_string(e.ok()?.path().join("steps.csv")).ok())
            .map_or(0, |t| t.lines().count().saturating_sub(1))
    };
    while steps_logged() < 2 {
        assert!(started.elapsed() < Duration::from_secs(120), "training logged no steps");
        std::thread::sleep(Duration::from_millis(20));
    }
    let killed = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "SIGTERM must end the run cleanly:\n{stderr}");
    assert!(stderr.contains("Stopped by a signal after step") && stderr.contains("--resume"), "{stderr}");
    let run_b = only_subdir(&models_b);
    let log_b = only_subdir(&logs_b);
    let stopped_at = csv(&log_b.join("steps.csv")).len() - 1;
    assert!(stopped_at >= 2, "{stopped_at}");
    // inside epoch 1 (a step takes tens of milliseconds): a checkpoint of the partial epoch
    assert!(stopped_at < epoch_size, "the signal came after epoch 1 ({stopped_at} steps)");
    {
        let ckpt = run_b.join("ckpt-000001");
        let state: serde_json::Value = serde_json::from_str(&fs::read_to_string(ckpt.join("train_state.json")).unwrap()).unwrap();
        assert_eq!(state["epoch"], 0, "{state}");
        assert_eq!(state["global_step"], stopped_at, "{state}");
        assert_eq!(state["partial_epoch"]["batches_done"], stopped_at, "{state}");
        assert_eq!(csv(&log_b.join("epochs.csv")).len(), 1, "no epoch row for the partial epoch");
    }
    let (stdout, _) = run_ok(facenet().args(["train", "--resume", run_b.to_str().unwrap(), "--device", "cpu", "--sync_every", "5"]));
    assert!(stdout.contains("Resuming from"), "{stdout}");

    // the same statistics and the same final checkpoint as the uninterrupted run
    let log_a = only_subdir(&logs_a);
    let (ea, eb) = (csv(&log_a.join("epochs.csv")), csv(&log_b.join("epochs.csv")));
    assert_eq!(ea.len(), 3);
    assert_eq!(eb.len(), 3, "{eb:?}");
    for col in ["epoch", "loss", "xent", "accuracy", "lr", "center_loss", "val_loss", "val_accuracy", "step", "images"] {
        let i = ea[0].iter().position(|h| h == col).unwrap();
        for row in 1..=2 {
            assert_eq!(ea[row][i], eb[row][i], "column {col}, epoch {row}");
        }
    }
    let (sa, sb) = (csv(&log_a.join("steps.csv")), csv(&log_b.join("steps.csv")));
    assert_eq!(sa.len(), 1 + 2 * epoch_size);
    assert_eq!(sb.len(), sa.len());
    for (a, b) in sa.iter().zip(&sb) {
        assert_eq!(a[..10], b[..10]);
    }
    assert_same_checkpoint(&only_subdir(&models_a), &run_b, "ckpt-000002");
}

/// Checkpoint `name` of two runs holds the same tensors, bit for bit.
fn assert_same_checkpoint(run_a: &Path, run_b: &Path, name: &str) {
    for file in ["model.safetensors", "train_state.safetensors"] {
        let read = |run: &Path| facenet::train::tensor_file::decode(&fs::read(run.join(name).join(file)).unwrap()).unwrap().0;
        let (ta, tb) = (read(run_a), read(run_b));
        assert_eq!(ta.keys().collect::<Vec<_>>(), tb.keys().collect::<Vec<_>>(), "{file}");
        let differing: Vec<&String> = ta.keys().filter(|k| ta[*k] != tb[*k]).collect();
        assert!(differing.is_empty(), "{name}/{file}: tensors differ: {differing:?}");
    }
}

/// A tmpfs of `bytes` mounted on `dir` (root only), unmounted when dropped.
#[cfg(target_os = "linux")]
struct SmallDisk(PathBuf);

#[cfg(target_os = "linux")]
impl SmallDisk {
    fn mount(dir: &Path, bytes: u64) -> Option<SmallDisk> {
        fs::create_dir_all(dir).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs", dir.to_str().unwrap()])
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| SmallDisk(dir.to_path_buf()))
    }
}

#[cfg(target_os = "linux")]
impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_damaged_checkpoint_falls_back_and_a_full_disk_stops_with_the_previous_checkpoint_intact() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("syn");
    synth(&data);
    let (logs, models) = (tmp.path().join("a/logs"), tmp.path().join("a/models"));
    let mut a = args(&data, &logs, &models, 2);
    a.extend(["--learning_rate", "0.01", "--max_nrof_epochs", "2"].map(String::from));
    run_ok(facenet().args(&a));
    let run = only_subdir(&models);
    let ckpt2 = run.join("ckpt-000002");
    let weights = ckpt2.join("model.safetensors");
    let original = fs::read(&weights).unwrap();
    let ckpt_bytes: u64 = fs::read_dir(&ckpt2).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum();

    // one flipped bit in the newest checkpoint: --resume warns, naming the file, and redoes
    // epoch 2 from epoch 1's checkpoint, ending with the same weights
    let mut damaged = original.clone();
    let k = damaged.len() - 9;
    damaged[k] ^= 0x04;
    fs::write(&weights, &damaged).unwrap();
    let (stdout, stderr) = run_ok(facenet().args(["train", "--resume", run.to_str().unwrap(), "--device", "cpu"]));
    assert!(stderr.contains("warning: skipping checkpoint") && stderr.contains(weights.to_str().unwrap()), "{stderr}");
    assert!(stdout.contains("ckpt-000001"), "{stdout}");
    let decode = |bytes: &[u8]| facenet::train::tensor_file::decode(bytes).unwrap().0;
    assert!(decode(&fs::read(&weights).unwrap()) == decode(&original), "epoch 2 again must give the same weights");

    // a disk with room for one checkpoint and a half: the second one fails, the error names
    // the path, the first stays intact and no temporary folder is left behind
    #[cfg(target_os = "linux")]
    {
        let disk_dir = tmp.path().join("small");
        let Some(_disk) = SmallDisk::mount(&disk_dir, ckpt_bytes * 3 / 2 + 64 * 1024) else {
            eprintln!("skipped the full-disk part: cannot mount a tmpfs (not root?)");
            return;
        };
        let mut b = args(&data, &tmp.path().join("b/logs"), &disk_dir, 2);
        b.extend(["--learning_rate", "0.01", "--max_nrof_epochs", "2"].map(String::from));
        let (ok, _, stderr) = output(facenet().args(&b));
        assert!(!ok, "{stderr}");
        let run = only_subdir(&disk_dir);
        assert!(stderr.contains("cannot write checkpoint") && stderr.contains(run.join("ckpt-000002").to_str().unwrap()), "{stderr}");
        facenet::train::checkpoint::verify_checkpoint(&run.join("ckpt-000001")).unwrap();
        let names: Vec<String> = fs::read_dir(&run).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        assert!(names.iter().all(|n| !n.starts_with('.')), "leftovers: {names:?}");
        assert!(!run.join("ckpt-000002").exists());
    }
}

#[cfg(unix)]
#[test]
fn a_second_signal_ends_the_run_at_once_and_it_still_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("syn");
    synth(&data);
    let (logs, models) = (tmp.path().join("logs"), tmp.path().join("models"));
    let mut a = args(&data, &logs, &models, 50);
    a.extend(["--learning_rate", "0.01", "--max_nrof_epochs", "1"].map(String::from));
    let child = std::process::Command::new(assert_cmd::cargo::cargo_bin("facenet"))
        .args(&a)
        .env("FACENET_NO_PROGRESS", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while fs::read_dir(&logs)
        .ok()
        .and_then(|mut d| d.next())
        .is_none_or(|e| fs::read_to_string(e.unwrap().path().join("steps.csv")).map_or(true, |t| t.lines().count() < 2))
    {
        assert!(started.elapsed() < Duration::from_secs(120), "training logged no steps");
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = child.id().to_string();
    for _ in 0..2 {
        assert!(std::process::Command::new("kill").args(["-INT", &pid]).status().unwrap().success());
        std::thread::sleep(Duration::from_millis(5));
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // the second signal arrived before the clean stop ended (a step takes tens of ms): 130
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    // whatever was written is whole: the run resumes (before its first checkpoint: anew, in
    // the same folders) and writes a checkpoint that verifies
    let run = only_subdir(&models);
    let (stdout, _) = run_ok(facenet().args(["train", "--resume", run.to_str().unwrap(), "--device", "cpu", "--epoch_size", "2"]));
    assert!(stdout.contains("Model directory"), "{stdout}");
    facenet::train::checkpoint::verify_checkpoint(&run.join("ckpt-000001")).unwrap();
}

#[test]
fn a_damaged_options_json_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("models/20260101-000000");
    fs::create_dir_all(&run).unwrap();
    fs::write(run.join("options.json"), r#"{"batch_size": 0, "data_dir": "/nonexistent"}"#).unwrap();
    let (ok, _, stderr) = output(facenet().args(["train", "--resume", run.to_str().unwrap()]));
    assert!(!ok);
    assert!(stderr.contains("options.json: bad options") && stderr.contains("--batch_size"), "{stderr}");
    fs::write(run.join("options.json"), r#"{"batch_size": "ninety"}"#).unwrap();
    let (ok, _, stderr) = output(facenet().args(["train", "--resume", run.to_str().unwrap()]));
    assert!(!ok);
    // a value of the wrong type: file, line and column
    assert!(stderr.contains("options.json: bad options") && stderr.contains("line 1 column"), "{stderr}");
}
