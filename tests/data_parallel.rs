//! `facenet train --devices` as a user runs it, on tiny synthetic data: two CPU replicas
//! train, write one checkpoint per epoch, and a resumed two-replica run continues exactly as
//! the uninterrupted one; a run resumes with another replica count; bad lists fail clearly.
//! (That N replicas compute what one device computes on the same global batch is checked in
//! the unit tests of `src/train/data_parallel.rs`.)

use std::fs;
use std::path::Path;

mod common;
use common::{csv, facenet, only_subdir, run_ok, synth_tiny as synth};

fn run_args(data: &Path, out: &Path, epochs: usize) -> Vec<String> {
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let mut v: Vec<String> = vec!["train".into()];
    v.extend(["--data_dir".into(), s(&data.join("train"))]);
    v.extend(["--lfw_dir".into(), s(&data.join("pairs")), "--lfw_pairs".into(), s(&data.join("pairs.txt"))]);
    v.extend(["--logs_base_dir".into(), s(&out.join("logs")), "--models_base_dir".into(), s(&out.join("models"))]);
    v.extend(["--max_nrof_epochs".into(), epochs.to_string()]);
    let rest = "--model_def inception_resnet_v1_small --image_size 32 --embedding_size 16 --batch_size 8 --epoch_size 3 \
                --optimizer RMSPROP --learning_rate 0.01 --keep_probability 0.8 --random_crop --random_flip \
                --weight_decay 1e-4 --center_loss_factor 0.01 --center_loss_alfa 0.9 --validation_set_split_ratio 0.2 \
                --lfw_nrof_folds 2 --lfw_batch_size 8 --nrof_preprocess_threads 2 --seed 7";
    v.extend(rest.split_whitespace().map(String::from));
    v
}

fn checkpoint_tensors(run: &Path, epoch: usize, file: &str) -> std::collections::BTreeMap<String, facenet::train::optim::StoredTensor> {
    let path = run.join(format!("ckpt-{epoch:06}")).join(file);
    facenet::train::tensor_file::decode(&fs::read(&path).unwrap()).unwrap().0
}

#[test]
fn two_cpu_replicas_train_and_resume_like_the_uninterrupted_run() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("syn");
    synth(&data);

    // A: 2 epochs on two CPU replicas in one go
    let a = tmp.path().join("a");
    let mut args = run_args(&data, &a, 2);
    args.extend(["--devices".into(), "cpu:0,cpu:1".into()]);
    let (stdout, _) = run_ok(facenet().args(&args));
    assert!(stdout.contains("Devices: cpu:0,cpu:1 (2 replicas, 4 to 4 of the 8 images of a batch each)"), "{stdout}");
    let run_a = only_subdir(&a.join("models"));
    let mut ckpts: Vec<String> =
        fs::read_dir(&run_a).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).filter(|n| n.starts_with("ckpt-")).collect();
    ckpts.sort();
    assert_eq!(ckpts, ["ckpt-000001", "ckpt-000002"], "one checkpoint per epoch, written once");
    let log_a = only_subdir(&a.join("logs"));
    let args_txt = fs::read_to_string(log_a.join("arguments.txt")).unwrap();
    assert!(args_txt.contains("devices: cpu:0,cpu:1"), "{args_txt}");

    // B: the same for 1 epoch, then resumed (with the same list) for the second
    let b = tmp.path().join("b");
    let mut args = run_args(&data, &b, 1);
    args.extend(["--devices".into(), "cpu:0,cpu:1".into()]);
    run_ok(facenet().args(&args));
    let run_b = only_subdir(&b.join("models"));
    let (stdout, _) =
        run_ok(facenet().args(["train", "--resume", run_b.to_str().unwrap(), "--max_nrof_epochs", "2", "--devices", "cpu:0,cpu:1"]));
    assert!(stdout.contains("Resuming from") && stdout.contains("Devices: cpu:0,cpu:1"), "{stdout}");
    let log_b = only_subdir(&b.join("logs"));
    let (sa, sb) = (csv(&log_a.join("steps.csv")), csv(&log_b.join("steps.csv")));
    assert_eq!(sa.len(), 7);
    assert_eq!(sb.len(), 7);
    for (x, y) in sa.iter().zip(&sb) {
        assert_eq!(x[..10], y[..10]);
    }
    for file in ["model.safetensors", "train_state.safetensors"] {
        let (ta, tb) = (checkpoint_tensors(&run_a, 2, file), checkpoint_tensors(&run_b, 2, file));
        assert_eq!(ta.keys().collect::<Vec<_>>(), tb.keys().collect::<Vec<_>>(), "{file}");
        let differing: Vec<&String> = ta.keys().filter(|k| ta[*k] != tb[*k]).collect();
        assert!(differing.is_empty(), "{file}: tensors differ after epoch 2: {differing:?}");
    }

    // C: the first epoch of B's options, resumed on one device (another replica count)
    let c = tmp.path().join("c");
    let mut args = run_args(&data, &c, 1);
    args.extend(["--devices".into(), "cpu:0,cpu:1".into()]);
    run_ok(facenet().args(&args));
    let run_c = only_subdir(&c.join("models"));
    assert_eq!(checkpoint_tensors(&run_c, 1, "model.safetensors"), checkpoint_tensors(&run_a, 1, "model.safetensors"));
    let (stdout, _) = run_ok(facenet().args(["train", "--resume", run_c.to_str().unwrap(), "--max_nrof_epochs", "2", "--device", "cpu"]));
    assert!(stdout.contains("Resuming from") && !stdout.contains("Devices:"), "{stdout}");
    let sc = csv(&only_subdir(&c.join("logs")).join("steps.csv"));
    assert_eq!(sc.len(), 7);
    for (x, y) in sc[..4].iter().zip(&sa[..4]) {
        assert_eq!(x[..10], y[..10], "the two-replica epoch is kept");
    }
    let tc = checkpoint_tensors(&run_c, 2, "model.safetensors");
    assert_eq!(tc.keys().collect::<Vec<_>>(), checkpoint_tensors(&run_a, 2, "model.safetensors").keys().collect::<Vec<_>>());
}

#[test]
fn bad_device_lists_fail_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let base = ["train", "--data_dir", d.to_str().unwrap(), "--max_nrof_epochs", "1"];
    for (extra, want) in [
        (vec!["--devices", "cpu:0,cpu:0"], "cpu:0 is named twice"),
        (vec!["--devices", "cpu:0,cuda:0"], "different backends"),
        (vec!["--devices", "cpu:0,cpu:1,cpu:2", "--batch_size", "2"], "3 replicas need a --batch_size of at least 3"),
        (vec!["--devices", "cuda:0,cuda:1"], "replicas on several GPUs"),
        (vec!["--devices", ""], "empty"),
    ] {
        let out = facenet().args(base).args(&extra).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{extra:?} should fail");
        assert!(stderr.contains(want), "{extra:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn bench_train_reports_the_scaling_efficiency_of_the_replicas() {
    let args = "bench train --model_def inception_resnet_v1_small --image_size 32 --batch_size 4 --num_classes 4 --warmup 0 \
                --steps 2 --devices cpu:0,cpu:1";
    let (stdout, _) = run_ok(facenet().args(args.split_whitespace()));
    let line = stdout.lines().find(|l| l.starts_with('{')).unwrap_or_else(|| panic!("no JSON line:\n{stdout}"));
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(v["replicas"], 2);
    assert_eq!(v["devices"], "cpu:0,cpu:1");
    assert_eq!(v["replica_step_s"].as_array().unwrap().len(), 2);
    let (one, many, eff) = (
        v["images_per_s_median"].as_f64().unwrap(),
        v["replica_images_per_s_median"].as_f64().unwrap(),
        v["scaling_efficiency"].as_f64().unwrap(),
    );
    assert!(one > 0.0 && many > 0.0, "{v}");
    assert!((eff - many / one).abs() < 1e-9, "one CPU device: efficiency = replica images/s over one device's ({v})");
    assert!(stdout.contains("scaling efficiency"), "{stdout}");
}
