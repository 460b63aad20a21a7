//! `facenet train` states its expected peak memory before the first step, the estimate is
//! near the peak the run really reaches, and a batch that cannot fit stops the run before it
//! starts with the largest batch that does (`src/train/memory.rs`).

use std::fs;
use std::path::Path;

use assert_cmd::Command;

fn facenet() -> Command {
    let mut c = Command::cargo_bin("facenet").unwrap();
    c.env("FACENET_NO_PROGRESS", "1").env("FACENET_DEVICE", "cpu");
    c
}

/// Peak resident memory of the largest child process waited for so far, in bytes.
fn children_peak_rss() -> f64 {
    // SAFETY: getrusage fills the struct it is given; all-zero is a valid `rusage`.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut u) };
    u.ru_maxrss as f64 * 1024.0
}

/// `about 1.6 GiB` / `about 380 MiB` after `Memory: ` -> bytes.
fn stated_bytes(stdout: &str) -> f64 {
    let line = stdout.lines().find(|l| l.starts_with("Memory: about ")).unwrap_or_else(|| panic!("no memory line:\n{stdout}"));
    let mut words = line["Memory: about ".len()..].split_whitespace();
    let value: f64 = words.next().unwrap().parse().unwrap();
    let unit = match words.next().unwrap() {
        "GiB" => (1u64 << 30) as f64,
        "MiB" => (1u64 << 20) as f64,
        u => panic!("unit {u}"),
    };
    value * unit
}

fn train(data: &Path, out: &Path, batch: &str, size: &str, extra: &[&str]) -> std::process::Output {
    let mut c = facenet();
    c.arg("train")
        .arg("--data_dir")
        .arg(data)
        .arg("--logs_base_dir")
        .arg(out.join("logs"))
        .arg("--models_base_dir")
        .arg(out.join("models"));
    c.args(["--model_def", "inception_resnet_v1_small", "--image_size", size, "--batch_size", batch, "--epoch_size", "2"]);
    c.args(["--max_nrof_epochs", "1", "--learning_rate", "0.01", "--optimizer", "RMSPROP"]).args(extra);
    c.output().unwrap()
}

/// One test (one process) so that the peak of the children is this run's.
#[test]
fn the_memory_estimate_is_stated_checked_and_near_the_real_peak() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("synth");
    let out = facenet()
        .arg("synth")
        .arg(&data)
        .args(["--identities", "6", "--images_per_identity", "4", "--image_size", "72", "--pairs_folds", "0", "--no_baseline"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let train_dir = data.join("train");

    // a batch far over a (simulated) 300 MiB limit: refused before the first step, with the
    // largest batch that fits; that batch then runs
    let refused = d.path().join("refused");
    let o = facenet()
        .env("FACENET_MEMORY_LIMIT", "300MiB")
        .arg("train")
        .arg("--data_dir")
        .arg(&train_dir)
        .arg("--logs_base_dir")
        .arg(refused.join("logs"))
        .arg("--models_base_dir")
        .arg(refused.join("models"))
        .args(["--model_def", "inception_resnet_v1_small", "--image_size", "64", "--batch_size", "4096", "--epoch_size", "1"])
        .args(["--max_nrof_epochs", "1", "--learning_rate", "0.01"])
        .output()
        .unwrap();
    let se = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{se}");
    assert!(se.contains("--batch_size 4096 needs about") && se.contains("is available ($FACENET_MEMORY_LIMIT)"), "{se}");
    let largest: usize = se
        .split("the largest batch that fits is ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no largest batch in: {se}"));
    assert!((20..1000).contains(&largest), "{se}");
    assert!(
        !refused.join("models").exists()
            || fs::read_dir(refused.join("models")).unwrap().all(|e| {
                let p = e.unwrap().path();
                fs::read_dir(&p).map(|mut r| r.next().is_none()).unwrap_or(true)
            }),
        "no checkpoint is written by a refused run"
    );

    // --no_memory_check lets the same run start anyway (a small batch here: it only has to start)
    let o = train(&train_dir, &d.path().join("forced"), "8", "64", &["--no_memory_check"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // the stated estimate against the measured peak of a real run
    let o = train(&train_dir, &d.path().join("measured"), "96", "64", &[]);
    let so = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{so}\n{}", String::from_utf8_lossy(&o.stderr));
    let (stated, peak) = (stated_bytes(&so), children_peak_rss());
    let ratio = stated / peak;
    println!("batch 96 at 64 px, small model: stated {:.0} MiB, peak {:.0} MiB (x{ratio:.2})", stated / 1048576.0, peak / 1048576.0);
    assert!((0.6..=1.5).contains(&ratio), "stated {stated} B, measured peak {peak} B");
}
