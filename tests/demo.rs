//! The README's first command, shortened: `facenet demo --quick` end to end.

use assert_cmd::Command;

#[test]
fn quick_demo_runs_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tmp.path().join("demo-output");
    let out = Command::cargo_bin("facenet")
        .unwrap()
        .env("FACENET_NO_PROGRESS", "1")
        .args(["demo", "--quick", "--out_dir"])
        .arg(&out_dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "demo failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    for step in ["[1/6]", "[3/6]", "[4/6]", "[5/6]", "[6/6]", "Accuracy: ", "Validation rate: ", "report"] {
        assert!(stdout.contains(step), "missing {step:?} in:\n{stdout}");
    }
    let html = std::fs::read_to_string(out_dir.join("report.html")).unwrap();
    assert!(html.contains("Loss per epoch") && html.contains("ROC"), "report lacks charts");
    assert!(out_dir.join("synth/pairs.txt").is_file());
    // With the weights and photos available (CI fetches them), faces are found and aligned.
    if stdout.contains("[2/6] Detecting") {
        assert!(html.contains("t1.jpg"), "report lacks the group photo");
        let crops = std::fs::read_dir(out_dir.join("aligned/samples")).unwrap().count();
        assert!(crops >= 6, "expected the group photo's 6 faces and the portrait, found {crops} crops");
    }
}
