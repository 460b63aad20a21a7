//! `--precision bf16` as a user runs it: the small network trained twice on the same tiny data
//! and seed, in f32 and in bf16. Where the CPU has AVX-512 BF16 the bf16 run must differ from
//! the f32 one (its products are rounded) yet follow it closely, record its precision, resume
//! in it, and embed with it; elsewhere it must be refused with the reason and nothing written.
//! (Own test file: the precision is process-wide, so it is only ever set in `facenet`
//! processes, never in the test process.)

use std::fs;
use std::path::Path;

mod common;
use common::{csv, facenet, only_subdir, output, run_ok, synth_tiny};

fn train_args(data: &Path, logs: &Path, models: &Path, precision: &str) -> Vec<String> {
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let mut v: Vec<String> = vec!["train".into(), "--data_dir".into(), s(&data.join("train"))];
    v.extend(["--logs_base_dir".into(), s(logs), "--models_base_dir".into(), s(models)]);
    v.extend(
        "--model_def inception_resnet_v1_small --image_size 32 --embedding_size 16 --batch_size 8 --epoch_size 4 \
         --max_nrof_epochs 2 --optimizer RMSPROP --learning_rate 0.01 --keep_probability 0.8 --random_flip \
         --weight_decay 1e-4 --center_loss_factor 0.01 --center_loss_alfa 0.9 --nrof_preprocess_threads 2 --seed 11 --precision"
            .split_whitespace()
            .map(String::from),
    );
    v.push(precision.into());
    v
}

/// (step, loss) of a run's steps.csv.
fn losses(log_dir: &Path) -> Vec<f64> {
    let rows = csv(&log_dir.join("steps.csv"));
    let col = rows[0].iter().position(|h| h == "loss").unwrap();
    rows[1..].iter().map(|r| r[col].parse().unwrap()).collect()
}

#[test]
fn bf16_training_follows_f32_or_is_refused_with_the_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("syn");
    synth_tiny(&data);
    let dirs = |name: &str| (tmp.path().join(format!("logs-{name}")), tmp.path().join(format!("models-{name}")));
    let (l32, m32) = dirs("f32");
    let (out, _) = run_ok(facenet().args(train_args(&data, &l32, &m32, "f32")));
    assert!(out.contains("f32 matrix products"), "{out}");

    let (lbf, mbf) = dirs("bf16");
    let (ok, out, err) = output(facenet().args(train_args(&data, &lbf, &mbf, "bf16")));
    let has_bf16 = std::arch::is_x86_feature_detected!("avx512bf16") && std::arch::is_x86_feature_detected!("avx512bw");
    if !has_bf16 {
        assert!(!ok && err.contains("AVX-512 BF16") && err.contains("--precision f32"), "{out}\n{err}");
        assert!(!err.contains("panicked"), "{err}");
        assert!(!mbf.exists() || fs::read_dir(&mbf).unwrap().next().is_none(), "a refused run writes no model");
        eprintln!("SKIPPED: this CPU has no AVX-512 BF16; checked that bf16 is refused");
        return;
    }
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("bf16 matrix products"), "{out}");
    let (a, b) = (losses(&only_subdir(&l32)), losses(&only_subdir(&lbf)));
    eprintln!("losses f32 {a:?}\n       bf16 {b:?}");
    assert_eq!(a.len(), b.len());
    assert!(a.iter().chain(&b).all(|x| x.is_finite()));
    // the same data, weights and dropout: the first loss differs only by the rounding of the
    // products' inputs (relative ~1e-3), and the run stays close to f32's
    let rel = |x: f64, y: f64| (x - y).abs() / y.abs();
    assert!(a[0] != b[0], "bf16 gave the f32 loss bit for bit: the bf16 products were not used");
    assert!(rel(b[0], a[0]) < 1e-2, "first loss f32 {} vs bf16 {}", a[0], b[0]);
    let (ma, mb) = (a.iter().sum::<f64>() / a.len() as f64, b.iter().sum::<f64>() / b.len() as f64);
    assert!(rel(mb, ma) < 0.1, "mean loss f32 {ma} vs bf16 {mb}: {a:?} {b:?}");
    // recorded with the run, so that --resume continues in it
    let run = only_subdir(&lbf);
    let args = fs::read_to_string(run.join("arguments.txt")).unwrap();
    assert!(args.lines().any(|l| l == "precision: bf16"), "{args}");
    let model_dir = only_subdir(&mbf);
    let more = ["--resume".to_string(), model_dir.to_str().unwrap().to_string(), "--max_nrof_epochs".into(), "3".into()];
    let mut resumed = train_args(&data, &lbf, &mbf, "f32")[..1].to_vec();
    resumed.extend(more);
    let (out, _) = run_ok(facenet().args(&resumed));
    assert!(out.contains("bf16 matrix products"), "a resumed bf16 run keeps bf16: {out}");
    // and the model embeds in bf16 close to f32, and not bit for bit
    let faces = data.join("train");
    let emb = |p: &str| {
        let out = tmp.path().join(format!("emb-{p}.npy"));
        run_ok(facenet().args(["embed", "--precision", p, "--model"]).arg(&model_dir).arg("-o").arg(&out).arg(&faces));
        facenet::data::npy::read_matrix(&out).unwrap()
    };
    let ((e32, n, d), (ebf, n2, d2)) = (emb("f32"), emb("bf16"));
    assert_eq!((n, d), (n2, d2));
    assert!(n >= 8 && d == 16, "{n} x {d}");
    assert_ne!(e32, ebf);
    for (i, (x, y)) in e32.chunks(d).zip(ebf.chunks(d)).enumerate() {
        let cos = x.iter().zip(y).map(|(a, b)| a * b).sum::<f64>(); // embeddings are unit vectors
        assert!(cos > 0.999, "image {i}: cosine f32 vs bf16 {cos}");
    }
}

/// The `"winograd"` field of the JSON line of a small `bench embed` with `$FACENET_WINOGRAD`
/// set to `env` (or unset) and `--precision precision`; `None` when the run is refused.
fn bench_winograd(env: Option<&str>, precision: &str) -> Option<bool> {
    let mut cmd = facenet();
    match env {
        Some(v) => cmd.env("FACENET_WINOGRAD", v),
        None => cmd.env_remove("FACENET_WINOGRAD"),
    };
    let args = "bench embed --model-def inception_resnet_v1_small --image-size 32 --batch-size 2 --warmup 0 --steps 1 --precision";
    let (ok, out, err) = output(cmd.args(args.split_whitespace()).arg(precision));
    if !ok {
        return None;
    }
    let line = out.lines().find(|l| l.starts_with('{')).unwrap_or_else(|| panic!("no JSON line: {out} {err}"));
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    Some(v["winograd"].as_bool().unwrap_or_else(|| panic!("no winograd field: {line}")))
}

/// f32 inference runs the 3x3 stride-1 convolutions as Winograd F(4x4, 3x3): `embed` gives
/// the im2col kernel's embeddings up to rounding (cosine > 0.99999, not bit for bit);
/// `FACENET_WINOGRAD=0` turns it off (then bit for bit the same again), `bench embed` says
/// which ran, and bf16 products keep the im2col kernel.
#[test]
fn f32_inference_runs_winograd_unless_turned_off() {
    use facenet::model::load::{MODEL_FILE, MODEL_JSON};
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("syn");
    synth_tiny(&data);
    let model = tmp.path().join("model");
    fs::create_dir_all(&model).unwrap();
    let (weights, json) = common::small_checkpoint_files();
    fs::write(model.join(MODEL_FILE), weights).unwrap();
    fs::write(model.join(MODEL_JSON), serde_json::to_string(&json).unwrap()).unwrap();
    let faces = data.join("train");
    let emb = |name: &str, winograd: Option<&str>| {
        let out = tmp.path().join(format!("emb-{name}.npy"));
        let mut cmd = facenet();
        match winograd {
            Some(v) => cmd.env("FACENET_WINOGRAD", v),
            None => cmd.env_remove("FACENET_WINOGRAD"),
        };
        run_ok(cmd.args(["embed", "--model"]).arg(&model).arg("-o").arg(&out).arg(&faces));
        facenet::data::npy::read_matrix(&out).unwrap()
    };
    let (wino, n, d) = emb("winograd", None);
    let (im2col, n2, d2) = emb("im2col", Some("0"));
    let (again, _, _) = emb("im2col-again", Some("off"));
    assert_eq!((n, d), (n2, d2));
    assert!(n >= 8 && d == 16, "{n} x {d}");
    assert_eq!(im2col, again, "FACENET_WINOGRAD=0 and =off both give the im2col kernel's bits");
    assert_ne!(wino, im2col, "the Winograd kernel did not run");
    for (i, (x, y)) in wino.chunks(d).zip(im2col.chunks(d)).enumerate() {
        let cos = x.iter().zip(y).map(|(a, b)| a * b).sum::<f64>(); // embeddings are unit vectors
        assert!(cos > 0.99999, "image {i}: cosine Winograd vs im2col {cos}");
    }
    assert_eq!(bench_winograd(None, "f32"), Some(true));
    assert_eq!(bench_winograd(Some("0"), "f32"), Some(false));
    // bf16 products keep the im2col kernel (or bf16 is refused on this CPU)
    let bf16 = bench_winograd(None, "bf16");
    assert_ne!(bf16, Some(true));
}

/// f32 training runs the 3x3 stride-1 convolutions and their input and weight gradients as
/// Winograd too: the run says so, its losses follow the im2col kernel's up to rounding (not bit for
/// bit), the same bits on a second run (so `--resume` stays exact), and `FACENET_WINOGRAD=0`
/// gives the im2col kernel's run.
#[test]
fn f32_training_runs_winograd_unless_turned_off() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("syn");
    synth_tiny(&data);
    let train = |name: &str, winograd: Option<&str>| {
        let (logs, models) = (tmp.path().join(format!("logs-{name}")), tmp.path().join(format!("models-{name}")));
        let mut cmd = facenet();
        match winograd {
            Some(v) => cmd.env("FACENET_WINOGRAD", v),
            None => cmd.env_remove("FACENET_WINOGRAD"),
        };
        let (out, _) = run_ok(cmd.args(train_args(&data, &logs, &models, "f32")));
        (out, losses(&only_subdir(&logs)))
    };
    let (out, wino) = train("winograd", None);
    assert!(out.contains("f32 matrix products, Winograd 3x3 convolutions"), "{out}");
    let (out, im2col) = train("im2col", Some("0"));
    assert!(out.contains("f32 matrix products") && !out.contains("Winograd"), "{out}");
    let (_, again) = train("winograd-again", None);
    eprintln!("losses Winograd {wino:?}\n       im2col   {im2col:?}");
    assert_eq!(wino, again, "two Winograd runs differ");
    assert_eq!(wino.len(), im2col.len());
    assert_ne!(wino, im2col, "the Winograd kernel did not run");
    assert!(wino.iter().all(|x| x.is_finite()), "{wino:?}");
    // the first loss differs by the forward's rounding, the second by the first update's
    // (gradients agree to ~1e-5 relative); later steps drift apart as any rounding change
    // makes tiny-batch training drift (batch norm over 8 images, dropout)
    let rel = |x: f64, y: f64| (x - y).abs() / y.abs();
    assert!(rel(wino[0], im2col[0]) < 1e-4, "first loss Winograd {} vs im2col {}", wino[0], im2col[0]);
    assert!(rel(wino[1], im2col[1]) < 1e-4, "second loss Winograd {} vs im2col {}", wino[1], im2col[1]);
}

/// The GPU backends' bf16 ([`facenet::model::autocast`]: convolutions cast to bf16 and back,
/// everything else f32), run on the CPU backend, which has the bf16 type too: training steps and
/// embeddings follow f32 closely and not bit for bit, and the weights stay f32. (In this
/// process only: the other tests here run `facenet` processes.)
#[test]
fn autocast_bf16_convolutions_follow_f32_and_keep_f32_weights() {
    use burn::module::Module;
    use burn::tensor::{DType, Device, FloatDType, Tensor, TensorData};
    use facenet::model::inception_resnet_v1::{InceptionResnetV1, InceptionResnetV1Config};
    use facenet::train::center_loss::CenterLoss;
    use facenet::train::loss::LossWeights;
    use facenet::train::optim::Tf1Optimizer;
    use facenet::train::parity::test_batch;
    use facenet::train::{OptimizerKind, TrainStep};
    use facenet::util::precision::{autocast_dtype, set_autocast};

    let device = Device::flex();
    let ad = device.clone().autodiff();
    ad.seed(3);
    let model = InceptionResnetV1Config::small(16, 1.0, 4).init(&ad);
    let _ = model.valid(); // initialises every parameter, shared by the clones below
    let (n, s) = (6, 48);
    let x = test_batch(n, s);
    let labels = [0i64, 1, 2, 3, 1, 2];
    let weights = LossWeights { weight_decay: 5e-5, center_loss_factor: 1e-2, prelogits_norm_loss_factor: 5e-4, prelogits_norm_p: 1.0 };
    let run = |m: InceptionResnetV1| -> (Vec<f64>, Vec<f32>, DType) {
        // the initial weights' embeddings (batch statistics: an untrained network's running
        // statistics do not normalise its activations), then two training steps
        let emb = m.forward(Tensor::<4>::from_data(TensorData::new(x.clone(), [n, 3, s, s]), &ad)).embeddings();
        let emb = emb.inner().try_into_vec_as::<f32>().unwrap();
        let mut step = TrainStep::new(m, Tf1Optimizer::new(OptimizerKind::Rmsprop), CenterLoss::new(4, 16, 0.9, &device), weights, &device);
        let losses = (0..2)
            .map(|_| step.run(Tensor::<4>::from_data(TensorData::new(x.clone(), [n, 3, s, s]), &ad), &labels, 1e-3).unwrap().total)
            .collect();
        (losses, emb, step.model().conv2d_1a.conv.weight.val().dtype())
    };
    set_autocast(None);
    let (l32, e32, _) = run(model.clone());
    set_autocast(Some(FloatDType::BF16));
    assert_eq!(autocast_dtype(), Some(FloatDType::BF16));
    let (lbf, ebf, dtype) = run(model);
    set_autocast(None);
    eprintln!("losses f32 {l32:?}, bf16 convolutions {lbf:?}");
    assert_eq!(dtype, DType::F32, "the weights stay f32");
    let rel = |a: f64, b: f64| (a - b).abs() / b.abs();
    assert!(l32[0] != lbf[0], "the convolutions did not run in bf16");
    // bf16 keeps 8 significant bits: the first loss moves by the products' rounding (a few
    // 1e-3); the second also by the first update's, and RMSProp's first update is nearly a sign
    // step (its mean square starts from the gradient's), so gradients near zero flip it: looser
    assert!(rel(lbf[0], l32[0]) < 2e-2, "first loss: f32 {l32:?} vs bf16 {lbf:?}");
    assert!(lbf[1] < lbf[0] && rel(lbf[1], l32[1]) < 0.1, "second loss: f32 {l32:?} vs bf16 {lbf:?}");
    // an untrained 16-d network, every convolution's output rounded to bf16 too (as PyTorch's
    // autocast does; the CPU backend's bf16 keeps f32 outputs): seen 0.998
    for (i, (a, b)) in e32.chunks(16).zip(ebf.chunks(16)).enumerate() {
        let cos: f32 = a.iter().zip(b).map(|(p, q)| p * q).sum();
        eprintln!("image {i}: cosine f32 vs bf16 convolutions {cos}");
        assert!(cos > 0.99, "image {i}: cosine f32 vs bf16 convolutions {cos}");
    }
}

/// `--precision f16` as a user runs it (on the CPU backend, which has the f16 type: the
/// mechanism GPUs run): convolutions in f16, the loss scaled dynamically (steps whose scaled
/// gradients overflow are skipped with a note and halve the scale, never counted as non-finite
/// steps), the scale kept in checkpoints so that an interrupted and resumed run ends exactly as
/// the uninterrupted one.
#[test]
fn f16_training_scales_the_loss_and_resumes_with_its_scale() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("syn");
    synth_tiny(&data);
    let with_epochs = |logs: &Path, models: &Path, epochs: &str| {
        let mut a = train_args(&data, logs, models, "f16");
        let at = a.iter().position(|x| x == "--max_nrof_epochs").unwrap();
        a[at + 1] = epochs.into();
        let at = a.iter().position(|x| x == "--epoch_size").unwrap();
        a[at + 1] = "6".into();
        a
    };
    let (la, ma) = (tmp.path().join("logs-a"), tmp.path().join("models-a"));
    let (out, err) = run_ok(facenet().args(with_epochs(&la, &ma, "3")));
    assert!(out.contains("f16 matrix products"), "{out}");
    assert!(!err.contains("non-finite"), "overflows are not non-finite steps: {err}");
    let overflows = err.lines().filter(|l| l.contains("f16 gradients overflowed at loss scale")).count();
    let steps = csv(&only_subdir(&la).join("steps.csv"));
    assert_eq!(steps.len() - 1 + overflows, 3 * 6, "every batch is a step or a skipped overflow: {err}");
    let loss = losses(&only_subdir(&la));
    assert!(loss.iter().all(|x| x.is_finite()) && loss.len() >= 6, "{loss:?}");
    let run_a = only_subdir(&ma);
    let state = |run: &Path, ckpt: &str| -> serde_json::Value {
        serde_json::from_str(&fs::read_to_string(run.join(ckpt).join("train_state.json")).unwrap()).unwrap()
    };
    let scale = state(&run_a, "ckpt-000003")["loss_scale"]["scale"].as_f64().expect("the checkpoint keeps the loss scale");
    assert_eq!(scale, 65536.0 / (1u64 << overflows) as f64, "halved once per overflow: {err}");

    // B: one epoch, then --resume for the other two: the same run
    let (lb, mb) = (tmp.path().join("logs-b"), tmp.path().join("models-b"));
    run_ok(facenet().args(with_epochs(&lb, &mb, "1")));
    let run_b = only_subdir(&mb);
    let resumed = ["train", "--resume", run_b.to_str().unwrap(), "--max_nrof_epochs", "3"];
    let (out, _) = run_ok(facenet().args(resumed));
    assert!(out.contains("f16 matrix products"), "a resumed f16 run keeps f16: {out}");
    assert_eq!(losses(&only_subdir(&lb)), loss);
    for file in ["model.safetensors", "train_state.safetensors"] {
        let read = |run: &Path| facenet::train::tensor_file::decode(&fs::read(run.join("ckpt-000003").join(file)).unwrap()).unwrap().0;
        let (ta, tb) = (read(&run_a), read(&run_b));
        assert!(!ta.is_empty() && ta == tb, "{file} differs after the resumed run");
    }
    assert_eq!(state(&run_b, "ckpt-000003")["loss_scale"], state(&run_a, "ckpt-000003")["loss_scale"]);
}
