//! The binary as a user runs it, on tiny generated data.

use std::path::Path;

use assert_cmd::Command;

fn facenet() -> Command {
    let mut c = Command::cargo_bin("facenet").unwrap();
    c.env("FACENET_NO_PROGRESS", "1");
    c
}

fn stdout_of(c: &mut Command) -> String {
    let out = c.output().unwrap();
    assert!(out.status.success(), "failed: {}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn help_lists_every_subcommand_and_version_works() {
    let help = stdout_of(facenet().arg("--help"));
    for sub in ["align", "detect", "train", "validate", "embed", "compare", "synth", "demo", "bench"] {
        assert!(help.lines().any(|l| l.trim_start().starts_with(sub)), "{sub} missing from --help:\n{help}");
    }
    let v = stdout_of(facenet().arg("--version"));
    assert!(v.starts_with("facenet "), "{v}");
}

#[test]
fn reference_command_lines_give_clear_errors() {
    // A reference command line with a missing dataset is a clear error, not a panic.
    let out = facenet().args(["train", "--data_dir", "/nonexistent/x", "--max_nrof_epochs", "3"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/x"));
    let out = facenet().args(["compare", "/nonexistent/model", "a.jpg", "b.jpg"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/model"));
}

/// `--device` is on every computing subcommand; a backend this binary lacks, or a name that
/// is none, is a clear error, never a panic.
#[test]
fn device_option_everywhere_and_clear_errors() {
    for sub in ["train", "embed", "validate", "align", "detect", "compare", "demo"] {
        let help = stdout_of(facenet().args([sub, "--help"]));
        assert!(help.contains("--device <DEVICE>"), "{sub} --help:\n{help}");
    }
    for b in ["train", "embed", "align"] {
        assert!(stdout_of(facenet().args(["bench", b, "--help"])).contains("--device"), "bench {b}");
    }
    let out = facenet().args(["detect", "--device", "gpu", "x.jpg"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("expected auto, cpu, vulkan"), "{err}");
    if !cfg!(feature = "cuda") {
        let out = facenet().args(["train", "--device", "cuda", "--data_dir", "/nonexistent/x"]).output().unwrap();
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("`cuda` feature") && !err.contains("panicked"), "{err}");
    }
    // $FACENET_DEVICE is the default of --device
    let out = facenet().env("FACENET_DEVICE", "nonsense").args(["detect", "x.jpg"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
}

fn synth(dir: &Path, extra: &[&str]) -> String {
    let mut c = facenet();
    c.arg("synth").arg(dir).args([
        "--identities",
        "6",
        "--images_per_identity",
        "4",
        "--image_size",
        "48",
        "--pairs_identities",
        "4",
        "--pairs_folds",
        "2",
        "--pairs_per_fold",
        "3",
    ]);
    c.args(extra);
    stdout_of(&mut c)
}

fn files_under(root: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((p.strip_prefix(root).unwrap().display().to_string(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn synth_layout_is_deterministic() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    let b = tmp.path().join("b");
    let summary = synth(&a, &["--threads", "1"]);
    assert!(summary.contains("raw-pixel baseline"), "{summary}");
    synth(&b, &[]);
    let fa = files_under(&a);
    assert_eq!(fa, files_under(&b), "same seed, different bytes");
    // 6 x 4 training + 4 x 4 held-out images + pairs.txt + synth.json
    assert_eq!(fa.len(), 24 + 16 + 2);
    assert!(a.join("train/Identity_0001/Identity_0001_0004.png").is_file());
    assert!(a.join("pairs/Identity_0007/Identity_0007_0001.png").is_file());
    let img = image::open(a.join("train/Identity_0006/Identity_0006_0001.png")).unwrap();
    assert_eq!((img.width(), img.height()), (48, 48));

    let pairs = facenet::data::pairs::read_pairs(&a.join("pairs.txt")).unwrap();
    assert_eq!(pairs.header, Some((2, 3)));
    assert_eq!(pairs.pairs.len(), 12);
    let (_, issame, dropped) = facenet::data::pairs::resolve_pairs(&a.join("pairs"), &pairs.pairs, false).unwrap();
    assert_eq!(dropped, 0);
    assert_eq!(issame, [true, true, true, false, false, false, true, true, true, false, false, false]);

    // The training folder is a valid dataset for `train`.
    let ds = facenet::data::dataset::Dataset::open(a.join("train").to_str().unwrap()).unwrap();
    assert_eq!((ds.num_classes(), ds.num_images()), (6, 24));
    assert!(ds.warnings.is_empty());

    // A rerun with the same settings is fine (it finishes an interrupted run); other settings are refused.
    synth(&a, &[]);
    let out = facenet().arg("synth").arg(&a).args(["--identities", "7"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("other settings"));

    let other_seed = tmp.path().join("c");
    synth(&other_seed, &["--seed", "1"]);
    assert_ne!(files_under(&other_seed), fa);
}

#[test]
fn validate_on_embedding_files() {
    let tmp = tempfile::tempdir().unwrap();
    // 40 pairs of 4-d embeddings: same pairs close, different pairs far apart.
    let n = 40;
    let mut e = Vec::new();
    let mut same = Vec::new();
    for k in 0..n {
        let s = k % 2 == 0;
        let base = [(k as f32 * 0.37).sin(), (k as f32 * 0.11).cos(), 0.3, -0.2];
        e.extend_from_slice(&base);
        let other = if s { [base[0] + 0.01, base[1], base[2], base[3] - 0.01] } else { [-base[0], -base[1], 0.9, 0.4] };
        e.extend_from_slice(&other);
        same.push(s);
    }
    // L2-normalise the rows like embeddings.
    for row in e.chunks_mut(4) {
        let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt();
        row.iter_mut().for_each(|x| *x /= norm);
    }
    let ep = tmp.path().join("e.npy");
    let ip = tmp.path().join("i.npy");
    facenet::data::npy::write_matrix_f32(&ep, &e, 2 * n, 4).unwrap();
    facenet::data::npy::write_bools(&ip, &same).unwrap();
    let json = tmp.path().join("r.json");
    let report = tmp.path().join("report.html");
    let out = stdout_of(
        facenet()
            .arg("validate")
            .arg("--embeddings")
            .arg(&ep)
            .arg("--issame")
            .arg(&ip)
            .arg("--json")
            .arg(&json)
            .arg("--report")
            .arg(&report),
    );
    let html = std::fs::read_to_string(&report).unwrap();
    assert!(html.contains("<svg") && html.contains("Per fold"), "report lacks charts");
    assert!(out.contains("Accuracy: 1.00000+-0.00000"), "{out}");
    assert!(out.contains("Validation rate:"), "{out}");
    assert!(out.contains("Area Under Curve (AUC):"), "{out}");
    assert!(out.contains("Equal Error Rate (EER):"), "{out}");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(v["accuracy_per_fold"].as_array().unwrap().len(), 10);
    assert_eq!(v["accuracy_mean"].as_f64(), Some(1.0));

    // A mismatch between the two files is a clear error.
    facenet::data::npy::write_bools(&ip, &same[..5]).unwrap();
    let out = facenet().arg("validate").arg("--embeddings").arg(&ep).arg("--issame").arg(&ip).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected 10 rows"));
}

#[test]
fn train_then_validate_and_embed_with_the_model() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("syn");
    let mut c = facenet();
    c.arg("synth").arg(&data).args([
        "--identities",
        "8",
        "--images_per_identity",
        "6",
        "--image_size",
        "40",
        "--pairs_identities",
        "6",
        "--pairs_folds",
        "10",
        "--pairs_per_fold",
        "2",
        "--no_baseline",
    ]);
    stdout_of(&mut c);
    let models = tmp.path().join("models");
    let mut t = facenet();
    t.arg("train")
        .arg("--logs_base_dir")
        .arg(tmp.path().join("logs"))
        .arg("--models_base_dir")
        .arg(&models)
        .arg("--data_dir")
        .arg(data.join("train"))
        .args([
            "--image_size",
            "32",
            "--model_def",
            "models.inception_resnet_v1_small",
            "--max_nrof_epochs",
            "1",
            "--epoch_size",
            "2",
            "--batch_size",
            "8",
            "--optimizer",
            "ADAM",
            "--learning_rate",
            "0.01",
        ]);
    stdout_of(&mut t);
    let run = std::fs::read_dir(&models).unwrap().next().unwrap().unwrap().path();
    let json = tmp.path().join("v.json");
    let out = stdout_of(
        facenet()
            .arg("validate")
            .arg(data.join("pairs"))
            .arg(&run)
            .arg("--lfw_pairs")
            .arg(data.join("pairs.txt"))
            .arg("--json")
            .arg(&json)
            .arg("--report")
            .arg(tmp.path().join("r.html")),
    );
    assert!(out.contains("Accuracy: "), "{out}");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(v["accuracy_per_fold"].as_array().unwrap().len(), 10);
    let html = std::fs::read_to_string(tmp.path().join("r.html")).unwrap();
    assert!(html.contains("data:image/png;base64"), "worst-error thumbnails embedded");

    let npy = tmp.path().join("e.npy");
    let out = stdout_of(facenet().arg("embed").arg("--model").arg(&run).arg(data.join("pairs/Identity_0009")).arg("-o").arg(&npy));
    assert!(out.contains("6 images"), "{out}");
    let (values, rows, cols) = facenet::data::npy::read_matrix(&npy).unwrap();
    assert_eq!((rows, cols), (6, 128));
    for r in values.chunks(cols) {
        let n: f64 = r.iter().map(|x| x * x).sum();
        assert!((n - 1.0).abs() < 1e-4, "rows are L2-normalised");
    }
    assert_eq!(std::fs::read_to_string(npy.with_extension("txt")).unwrap().lines().count(), 6);
}

/// Output into a pipe whose reader has gone (`facenet ... | head -n 1`) ends the process
/// quietly: killed by SIGPIPE like other Unix tools, no "failed printing to stdout" panic.
#[cfg(unix)]
#[test]
fn closed_pipe_ends_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let bin = assert_cmd::cargo::cargo_bin("facenet");
    let out = std::process::Command::new(bin)
        .args(["bench", "synth", "--images", "4", "--image_size", "32"])
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked") && !stderr.contains("Broken pipe"), "{stderr}");
    assert_eq!(out.status.signal(), Some(libc_sigpipe()), "{:?}", out.status);
}

#[cfg(unix)]
fn libc_sigpipe() -> i32 {
    13 // SIGPIPE on Linux and the BSDs
}
