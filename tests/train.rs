//! `facenet train` as a user runs it, on tiny synthetic data: the seed's command line, the
//! run folders and statistics, a corrupt image, checkpoints that load for inference, a
//! resumed run that continues exactly as the uninterrupted one, and the TensorBoard events of
//! both.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

mod common;
use common::{csv, facenet, only_subdir, run_ok, synth_tiny as synth};

/// tag -> (step, value) of a log folder's event files, merged as TensorBoard merges them: in
/// name order, a `SessionLog.START` dropping what was logged at its step and after.
fn tensorboard_scalars(log_dir: &Path) -> BTreeMap<String, Vec<(i64, f32)>> {
    use facenet::train::tensorboard::{event_files, read_events, FILE_VERSION};
    let mut tags: BTreeMap<String, Vec<(i64, f32)>> = BTreeMap::new();
    for file in event_files(log_dir).unwrap() {
        let events = read_events(&file).unwrap();
        assert_eq!(events[0].file_version.as_deref(), Some(FILE_VERSION), "{}", file.display());
        for e in events {
            if e.session_start {
                tags.values_mut().for_each(|v| v.retain(|(s, _)| *s < e.step));
            }
            for (tag, value) in e.scalars {
                tags.entry(tag).or_default().push((e.step, value));
            }
        }
    }
    tags
}

/// The events of a run's log folder hold the values of its `steps.csv` and `epochs.csv`
/// (tag, column), at each row's step.
fn assert_events_match_csv(log_dir: &Path) {
    let tags = tensorboard_scalars(log_dir);
    let check = |csv_name: &str, pairs: &[(&str, &str)]| {
        let rows = csv(&log_dir.join(csv_name));
        let col = |name: &str| rows[0].iter().position(|h| h == name).unwrap_or_else(|| panic!("{name}"));
        for (tag, column) in pairs {
            let (i, s) = (col(column), col("step"));
            let want: Vec<(i64, f64)> =
                rows[1..].iter().filter(|r| !r[i].is_empty()).map(|r| (r[s].parse().unwrap(), r[i].parse().unwrap())).collect();
            let got = tags.get(*tag).unwrap_or_else(|| panic!("no events tagged {tag}: {:?}", tags.keys()));
            assert_eq!(got.len(), want.len(), "{tag}: {got:?} vs {csv_name} {column} {want:?}");
            for ((gs, gv), (ws, wv)) in got.iter().zip(&want) {
                assert_eq!(gs, ws, "{tag}");
                // times are rounded in the CSV files, the rest written exactly
                let tol = if tag.starts_with("time/") || tag.ends_with("images_per_s") { 0.006 } else { 0.0 };
                assert!((f64::from(*gv) - (*wv as f32) as f64).abs() <= tol, "{tag} at step {gs}: {gv} vs {column} {wv}");
            }
        }
    };
    check(
        "steps.csv",
        &[
            ("total_loss (raw)", "loss"),
            ("cross_entropy (raw)", "xent"),
            ("learning_rate", "lr"),
            ("train/reg_loss", "reg_loss"),
            ("train/center_loss", "center_loss"),
            ("train/prelogits_norm", "prelogits_norm"),
            ("train/accuracy", "accuracy"),
            ("time/step", "time"),
        ],
    );
    check(
        "epochs.csv",
        &[
            ("lfw/accuracy", "lfw_accuracy"),
            ("lfw/val_rate", "lfw_val"),
            ("lfw/auc", "lfw_auc"),
            ("lfw/eer", "lfw_eer"),
            ("train/val_loss", "val_loss"),
            ("train/val_xent", "val_xent"),
            ("train/val_accuracy", "val_accuracy"),
            ("train/images_per_s", "images_per_s"),
            ("time/total", "time_train"),
            ("time/lfw", "time_evaluate"),
            ("time/validate", "time_validate"),
        ],
    );
    assert_eq!(tags["total_loss"].len(), tags["total_loss (raw)"].len());
}

#[test]
fn seed_command_line_runs_verbatim() {
    let home = tempfile::tempdir().unwrap();
    let syn = home.path().join("syn");
    synth(&syn);
    let casia = home.path().join("datasets/casia/casia_maxpy_mtcnnalign_182");
    let lfw = home.path().join("datasets/lfw/lfw_mtcnnalign_160");
    fs::create_dir_all(casia.parent().unwrap()).unwrap();
    fs::create_dir_all(lfw.parent().unwrap()).unwrap();
    fs::rename(syn.join("train"), &casia).unwrap();
    fs::rename(syn.join("pairs"), &lfw).unwrap();
    let seed = "--logs_base_dir ~/logs/facenet/ --models_base_dir ~/models/facenet/ --data_dir ~/datasets/casia/casia_maxpy_mtcnnalign_182 --image_size 160 --model_def models.inception_resnet_v1 --lfw_dir ~/datasets/lfw/lfw_mtcnnalign_160 --optimizer RMSPROP --learning_rate -1 --max_nrof_epochs 80 --keep_probability 0.8 --random_crop --random_flip --learning_rate_schedule_file data/learning_rate_schedule_classifier_casia.txt --weight_decay 5e-5 --center_loss_factor 1e-2 --center_loss_alfa 0.9";
    // the seed's command, then what a CPU smoke run changes (a later flag wins, as in argparse)
    let pairs = syn.join("pairs.txt");
    let (stdout, _) = run_ok(
        facenet()
            .env("HOME", home.path())
            .arg("train")
            .args(seed.split_whitespace())
            .args(["--lfw_pairs", pairs.to_str().unwrap(), "--lfw_nrof_folds", "2", "--lfw_batch_size", "8"])
            .args(["--max_nrof_epochs", "1", "--epoch_size", "1", "--batch_size", "3", "--log_histograms"]),
    );
    assert!(stdout.contains("Epoch 1/1:"), "{stdout}");
    assert!(stdout.contains("LFW accuracy"), "{stdout}");
    let log_dir = only_subdir(&home.path().join("logs/facenet"));
    let model_dir = only_subdir(&home.path().join("models/facenet"));
    assert_eq!(log_dir.file_name(), model_dir.file_name());
    let args = fs::read_to_string(log_dir.join("arguments.txt")).unwrap();
    assert!(args.contains("optimizer: RMSPROP\n") && args.contains("learning_rate: -1.0\n"), "{args}");
    assert!(fs::read_to_string(log_dir.join("revision_info.txt")).unwrap().contains("facenet version"));
    let epochs = csv(&log_dir.join("epochs.csv"));
    assert_eq!(&epochs[0][..7], &["epoch", "loss", "xent", "accuracy", "lr", "lfw_accuracy", "lfw_val"]);
    assert_eq!(epochs.len(), 2);
    assert_eq!(epochs[1][4], "0.05", "schedule rate of epoch 1");
    assert!(!epochs[1][5].is_empty(), "LFW accuracy computed");
    let ckpt = model_dir.join("ckpt-000001");
    for f in ["model.safetensors", "model.json", "train_state.safetensors", "train_state.json"] {
        assert!(ckpt.join(f).is_file(), "{f}");
    }
    let meta: serde_json::Value = serde_json::from_str(&fs::read_to_string(ckpt.join("model.json")).unwrap()).unwrap();
    assert_eq!(meta["meta"]["model_def"], "inception_resnet_v1");
    assert_eq!(meta["meta"]["image_size"], 160);
    assert_eq!(meta["meta"]["num_classes"], 8);
    // --log_histograms: the epoch's weight and prelogit histograms, at its last step
    let events = facenet::train::tensorboard::read_events(&facenet::train::tensorboard::event_files(&log_dir).unwrap()[0]).unwrap();
    let histograms: Vec<_> = events.iter().flat_map(|e| e.histograms.iter().map(move |(t, h)| (e.step, t.as_str(), h))).collect();
    let find = |tag: &str| histograms.iter().find(|(_, t, _)| *t == tag).unwrap_or_else(|| panic!("no histogram {tag}"));
    let (step, _, w) = find("conv2d_1a/conv/weight");
    assert_eq!((*step, w.num), (1, (32 * 3 * 3 * 3) as f64));
    assert_eq!(w.bucket.iter().sum::<f64>(), w.num);
    assert!(w.min < 0.0 && w.max > 0.0 && w.sum_squares > 0.0);
    let (_, _, p) = find("prelogits");
    assert_eq!(p.num, (3 * 128) as f64, "the prelogits (128-d) of a probe batch of --batch_size images");
    assert!(find("logits/weight").2.num == (128 * 8) as f64 && find("block8/conv2d/bias").2.num == 1792.0);
    assert!(histograms.iter().all(|(_, t, _)| !t.contains("running_")), "running statistics are not trained");
}

fn small_run_args(data: &Path, logs: &Path, models: &Path) -> Vec<String> {
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let mut v: Vec<String> = vec!["train".into()];
    v.extend(["--data_dir".into(), s(&data.join("train"))]);
    v.extend(["--lfw_dir".into(), s(&data.join("pairs")), "--lfw_pairs".into(), s(&data.join("pairs.txt"))]);
    v.extend(["--logs_base_dir".into(), s(logs), "--models_base_dir".into(), s(models)]);
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
            "--epoch_size",
            "3",
            "--optimizer",
            "RMSPROP",
            "--learning_rate",
            "0.01",
            "--keep_probability",
            "0.8",
            "--random_crop",
            "--random_flip",
            "--random_rotate",
            "--weight_decay",
            "1e-4",
            "--center_loss_factor",
            "0.01",
            "--center_loss_alfa",
            "0.9",
            "--prelogits_norm_loss_factor",
            "1e-3",
            "--validation_set_split_ratio",
            "0.2",
            "--validate_every_n_epochs",
            "1",
            "--lfw_nrof_folds",
            "2",
            "--lfw_batch_size",
            "8",
            "--nrof_preprocess_threads",
            "3",
            "--seed",
            "7",
        ]
        .map(String::from),
    );
    v
}

#[test]
fn resumed_run_continues_like_the_uninterrupted_one() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("syn");
    synth(&data);
    // a corrupt image inside an identity: reported once, skipped
    fs::write(data.join("train/Identity_0003/Identity_0003_0099.png"), b"not an image").unwrap();

    // A: 2 epochs in one go
    let (logs_a, models_a) = (tmp.path().join("a/logs"), tmp.path().join("a/models"));
    let mut args = small_run_args(&data, &logs_a, &models_a);
    args.extend(["--max_nrof_epochs".into(), "2".into()]);
    let (_, stderr) = run_ok(facenet().args(&args));
    assert_eq!(stderr.matches("Identity_0003_0099.png").count(), 1, "reported once:\n{stderr}");

    // B: 1 epoch, "killed" (stray rows of a second epoch), resumed for the second
    let (logs_b, models_b) = (tmp.path().join("b/logs"), tmp.path().join("b/models"));
    let mut args = small_run_args(&data, &logs_b, &models_b);
    args.extend(["--max_nrof_epochs".into(), "1".into()]);
    run_ok(facenet().args(&args));
    let run_b = only_subdir(&models_b);
    let log_b = only_subdir(&logs_b);
    let steps_b = log_b.join("steps.csv");
    let mut text = fs::read_to_string(&steps_b).unwrap();
    text.push_str("4,2,1,9,9,9,9,9,9,9,8,0,0.1\n5,2,2,9,9");
    fs::write(&steps_b, text).unwrap();
    // ... and its event file the same steps, the last one cut
    let events_b = facenet::train::tensorboard::event_files(&log_b).unwrap();
    assert_eq!(events_b.len(), 1);
    let mut bytes = fs::read(&events_b[0]).unwrap();
    for step in [4, 5] {
        let e = facenet::train::tensorboard::Event::scalars(step, &[("total_loss (raw)", 9.0), ("lfw/accuracy", 9.0)]);
        facenet::train::tensorboard::frame_record(&e.encode(), &mut bytes);
    }
    bytes.truncate(bytes.len() - 5);
    fs::write(&events_b[0], bytes).unwrap();
    let (stdout, _) = run_ok(facenet().args(["train", "--resume", run_b.to_str().unwrap(), "--max_nrof_epochs", "2"]));
    assert!(stdout.contains("Resuming from"), "{stdout}");

    let log_a = only_subdir(&logs_a);
    let ea = csv(&log_a.join("epochs.csv"));
    let eb = csv(&log_b.join("epochs.csv"));
    assert_eq!(ea.len(), 3);
    assert_eq!(eb.len(), 3, "{eb:?}");
    let header = &ea[0];
    for col in ["epoch", "loss", "xent", "accuracy", "lr", "lfw_accuracy", "lfw_val", "center_loss", "val_loss", "val_accuracy", "step"] {
        let i = header.iter().position(|h| h == col).unwrap();
        for row in 1..=2 {
            assert_eq!(ea[row][i], eb[row][i], "column {col}, epoch {row}");
        }
    }
    let sa = csv(&log_a.join("steps.csv"));
    let sb = csv(&steps_b);
    assert_eq!(sa.len(), 7);
    assert_eq!(sb.len(), 7, "the killed run's stray rows are gone");
    for (a, b) in sa.iter().zip(&sb) {
        assert_eq!(a[..10], b[..10]);
    }
    // TensorBoard: one event file per run (two for the resumed one) with the CSV files' values;
    // the resumed run's merged events equal the uninterrupted run's, times aside
    assert_eq!(facenet::train::tensorboard::event_files(&log_a).unwrap().len(), 1);
    let files_b = facenet::train::tensorboard::event_files(&log_b).unwrap();
    assert_eq!(files_b.len(), 2);
    let first_b = facenet::train::tensorboard::read_events(&files_b[0]).unwrap();
    assert!(first_b.iter().all(|e| e.step <= 3), "the killed run's file is trimmed to its checkpoint (step 3)");
    assert_events_match_csv(&log_a);
    assert_events_match_csv(&log_b);
    let (ta, tb) = (tensorboard_scalars(&log_a), tensorboard_scalars(&log_b));
    assert_eq!(ta.keys().collect::<Vec<_>>(), tb.keys().collect::<Vec<_>>());
    for tag in ta.keys().filter(|t| !t.starts_with("time/") && !t.ends_with("images_per_s")) {
        assert_eq!(ta[tag], tb[tag], "{tag}");
    }
    // the resumed run's checkpoints equal the uninterrupted run's
    let run_a = only_subdir(&models_a);
    for file in ["model.safetensors", "train_state.safetensors"] {
        let read = |run: &Path| facenet::train::tensor_file::decode(&fs::read(run.join("ckpt-000002").join(file)).unwrap()).unwrap().0;
        let (ta, tb) = (read(&run_a), read(&run_b));
        assert_eq!(ta.keys().collect::<Vec<_>>(), tb.keys().collect::<Vec<_>>(), "{file}");
        let differing: Vec<&String> = ta.keys().filter(|k| ta[*k] != tb[*k]).collect();
        assert!(differing.is_empty(), "{file}: tensors differ after epoch 2: {differing:?}");
    }

    // the run loads for inference and embeds
    let device = burn::tensor::Device::flex();
    let (model, meta) = facenet::model::load_inference_model(&run_a, &device).unwrap();
    assert_eq!(meta.embedding_size, 16);
    assert_eq!(meta.num_classes, 8);
    let img = facenet::data::image_io::load_rgb(&data.join("pairs/Identity_0009/Identity_0009_0001.png")).unwrap();
    let opts = facenet::eval::embed::EmbedOptions {
        image_size: meta.image_size,
        batch_size: 4,
        standardization: meta.standardization,
        use_flipped_images: false,
    };
    let e = facenet::eval::embed::embed_images(&model, &[img], &opts, &device);
    assert_eq!(e.len(), 16);
    assert!((e.iter().map(|v| v * v).sum::<f32>() - 1.0).abs() < 1e-4);
}

#[test]
fn bad_options_fail_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("syn");
    synth(&data);
    let sched = tmp.path().join("lr.txt");
    fs::write(&sched, "0: 0.1\n5 0.01\n").unwrap();
    let mut args = small_run_args(&data, &tmp.path().join("l"), &tmp.path().join("m"));
    args.extend(["--learning_rate".into(), "-1".into(), "--learning_rate_schedule_file".into(), sched.to_str().unwrap().into()]);
    let out = facenet().args(&args).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("lr.txt:2: expected `epoch: rate`"), "{err}");
    // a schedule that stops at once: no epoch, clean exit
    fs::write(&sched, "0: -\n").unwrap();
    let (stdout, _) = run_ok(facenet().args(&args));
    assert!(stdout.contains("schedule stops training at epoch 1"), "{stdout}");
    let out = facenet().args(["train", "--model_def", "resnet50", "--data_dir"]).arg(data.join("train")).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown --model_def"));
}

#[test]
fn resume_before_the_first_checkpoint_starts_over_in_the_same_folders() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("syn");
    synth(&data);
    let (logs, models) = (tmp.path().join("logs"), tmp.path().join("models"));
    let mut args = small_run_args(&data, &logs, &models);
    args.extend(["--max_nrof_epochs".into(), "0".into()]);
    run_ok(facenet().args(&args));
    let run = only_subdir(&models);
    assert!(fs::read_dir(&run).unwrap().all(|e| !e.unwrap().file_name().to_string_lossy().starts_with("ckpt-")));
    run_ok(facenet().args(["train", "--resume", run.to_str().unwrap(), "--max_nrof_epochs", "1"]));
    assert!(run.join("ckpt-000001/model.safetensors").is_file());
    assert_eq!(only_subdir(&models), run);
    let log = only_subdir(&logs);
    assert_eq!(csv(&log.join("epochs.csv")).len(), 2);
}
