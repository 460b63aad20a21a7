//! `facenet demo`: the whole workflow on built-in data, in a few minutes on a laptop CPU.
//!
//! 1. fetch the MTCNN weights and two real sample photos (first use only);
//! 2. detect and align the faces of those photos (the `align` code path);
//! 3. render a synthetic identity dataset (`synth`);
//! 4. train the small Inception-ResNet-v1 with the reference's recipe (softmax + center loss,
//!    RMSProp, a learning-rate schedule file, random crop/flip, dropout, weight decay),
//!    evaluating on the held-out pairs every epoch (`train`);
//! 5. validate the final model on the pairs (`validate`);
//! 6. write `report.html` with the crops, the training curves, the ROC and the metrics.

pub mod draw;
pub mod report;
pub mod samples;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};

use crate::align::{align_dataset, load_detector, AlignOptions, DetectorConfig, Face};
use crate::data::image_io::load_rgb;
use crate::eval::metrics::EvalOptions;
use crate::eval::verify::{verify_model, Verification, VerifyOptions};
use crate::synth::{generate, SynthConfig};
use crate::train::options::TrainOptions;
use crate::train::{train_with_console, Console, TrainSummary};
use crate::util::atomic::write_atomic;
use crate::util::device::DeviceSpec;
use crate::util::precision::{check_precision, set_precision, Precision};

/// The demo's knobs; the defaults are the few-minute CPU run.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    pub out_dir: PathBuf,
    pub identities: usize,
    pub images_per_identity: usize,
    /// Side of the rendered synthetic images; training crops `train_size` out of them.
    pub synth_size: u32,
    pub train_size: u32,
    pub epochs: usize,
    pub epoch_size: usize,
    pub batch_size: usize,
    pub pairs_identities: usize,
    pub pairs_per_fold: usize,
    /// Skip the real photos (no weights or photos needed).
    pub skip_photos: bool,
    pub seed: u64,
    /// Where detection, training and validation compute (`--device`).
    pub device: DeviceSpec,
    /// What training and validation compute their matrix products with (`--precision`);
    /// detection stays f32, as the reference's.
    pub precision: Precision,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            out_dir: PathBuf::from("demo-output"),
            identities: 150,
            images_per_identity: 20,
            synth_size: 72,
            train_size: 64,
            epochs: 12,
            epoch_size: 50,
            batch_size: 64,
            pairs_identities: 50,
            pairs_per_fold: 30,
            skip_photos: false,
            seed: 666,
            device: DeviceSpec::Auto,
            precision: Precision::F32,
        }
    }
}

/// The learning-rate schedule the demo trains with (the reference's file format).
pub const DEMO_SCHEDULE: &str = "# Learning rate schedule of the demo (epoch: rate), the reference's file format.\n\
# The rate of the last line whose epoch is <= the current epoch applies.\n\
0:  0.05\n\
7:  0.01\n\
10: 0.002\n";

/// What the photo step found.
pub struct PhotoResult {
    pub photo: PathBuf,
    pub faces: Vec<Face>,
    pub annotated: PathBuf,
    pub crops: Vec<PathBuf>,
}

/// Everything the demo produced.
pub struct DemoResult {
    pub photos: Vec<PhotoResult>,
    pub photo_note: Option<String>,
    pub training: TrainSummary,
    pub verification: Verification,
    pub report: PathBuf,
    pub timings: Vec<(String, f64)>,
}

fn step(n: usize, what: &str) {
    println!("\n[{n}/6] {what}");
}

/// Runs the demo.
pub fn run_demo(o: &DemoOptions) -> Result<DemoResult> {
    let out = &o.out_dir;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut timings = Vec::new();
    let chosen = o.device.open()?;
    check_precision(o.precision, &chosen)?;
    // MTCNN in f32 (training sets `o.precision`)
    set_precision(Precision::F32, &chosen)?;
    println!("Device: {}, {} matrix products", chosen.description, o.precision);
    let device = &chosen.device;

    // 1-2. Real photos.
    let t = Instant::now();
    step(1, "Fetching the MTCNN weights and the sample photos (first use only)");
    let (photos, photo_note) = if o.skip_photos {
        (Vec::new(), Some("skipped (--skip_photos)".to_string()))
    } else {
        match samples::ensure_samples().and_then(|p| Ok((p, load_detector(DetectorConfig::default(), device)?))) {
            Ok((paths, mtcnn)) => {
                timings.push(("fetch".into(), t.elapsed().as_secs_f64()));
                let t = Instant::now();
                step(2, "Detecting and aligning the faces of the sample photos (MTCNN)");
                let r = align_photos(&paths, &mtcnn, out)?;
                timings.push(("align".into(), t.elapsed().as_secs_f64()));
                (r, None)
            }
            Err(e) => {
                let note = format!("real photos skipped: {e:#}");
                eprintln!("warning: {note}");
                step(2, "Aligning photos: skipped");
                (Vec::new(), Some(note))
            }
        }
    };

    // 3. Synthetic identities.
    let t = Instant::now();
    step(3, "Rendering synthetic identities");
    let synth_dir = out.join("synth");
    let cfg = SynthConfig {
        identities: o.identities,
        images_per_identity: o.images_per_identity,
        image_size: o.synth_size,
        seed: o.seed,
        pairs_identities: o.pairs_identities,
        pairs_images_per_identity: o.images_per_identity,
        pairs_folds: 10,
        pairs_per_fold: o.pairs_per_fold,
    };
    let s = generate(&synth_dir, &cfg, true)?;
    println!("  {} training images of {} identities, {} held-out pairs -> {}", s.train_images, o.identities, s.pairs, synth_dir.display());
    timings.push(("synth".into(), t.elapsed().as_secs_f64()));

    // 4. Training with the reference's recipe, scaled down.
    let t = Instant::now();
    step(4, "Training the small Inception-ResNet-v1 (softmax + center loss, RMSProp, schedule file)");
    let schedule = out.join("learning_rate_schedule_demo.txt");
    write_atomic(&schedule, DEMO_SCHEDULE.as_bytes())?;
    let args = training_args(&DemoOptions { device: chosen.spec, ..o.clone() }, &synth_dir, &schedule);
    println!("  facenet {}", args[1..].join(" "));
    // parsed exactly as `facenet train` parses its command line
    let train_options = TrainOptions::parse_from(&args[1..]).context("demo training options")?;
    let training = train_with_console(&train_options, &mut (), Console::default())?;
    timings.push(("train".into(), t.elapsed().as_secs_f64()));

    // 5. Validation of the final model.
    let t = Instant::now();
    step(5, "Validating the trained model on the held-out pairs (LFW protocol)");
    let model = training.model_dir.clone();
    let vo = VerifyOptions { batch_size: 100, show_progress: true, ..VerifyOptions::default() };
    let verification = verify_model(&synth_dir.join("pairs"), &synth_dir.join("pairs.txt"), &model, &vo, &EvalOptions::default(), device)?;
    crate::eval::summary::print_summary(&verification.evaluation);
    timings.push(("validate".into(), t.elapsed().as_secs_f64()));

    // 6. Report.
    step(6, "Writing the report");
    let report_path = out.join("report.html");
    let result = DemoResult { photos, photo_note, training, verification, report: report_path.clone(), timings };
    report::write_demo_report(&report_path, o, &result)?;
    Ok(result)
}

/// The `facenet train` command line the demo runs: the seed's recipe at demo scale.
pub fn training_args(o: &DemoOptions, synth_dir: &Path, schedule: &Path) -> Vec<String> {
    let p = |x: &Path| x.display().to_string();
    let mut v: Vec<String> = vec!["facenet".into()];
    let mut push = |k: &str, val: String| {
        v.push(k.to_string());
        if !val.is_empty() {
            v.push(val);
        }
    };
    push("--logs_base_dir", p(&o.out_dir.join("logs")));
    push("--models_base_dir", p(&o.out_dir.join("models")));
    push("--data_dir", p(&synth_dir.join("train")));
    push("--image_size", o.train_size.to_string());
    push("--model_def", "models.inception_resnet_v1_small".into());
    push("--lfw_dir", p(&synth_dir.join("pairs")));
    push("--lfw_pairs", p(&synth_dir.join("pairs.txt")));
    push("--optimizer", "RMSPROP".into());
    push("--learning_rate", "-1".into());
    push("--max_nrof_epochs", o.epochs.to_string());
    push("--epoch_size", o.epoch_size.to_string());
    push("--batch_size", o.batch_size.to_string());
    push("--keep_probability", "0.8".into());
    push("--random_crop", String::new());
    push("--random_flip", String::new());
    push("--learning_rate_schedule_file", p(schedule));
    push("--weight_decay", "5e-5".into());
    push("--center_loss_factor", "1e-2".into());
    push("--center_loss_alfa", "0.9".into());
    push("--seed", o.seed.to_string());
    if o.device != DeviceSpec::Auto {
        push("--device", o.device.to_string());
    }
    if o.precision != Precision::F32 {
        push("--precision", o.precision.to_string());
    }
    v
}

/// Detects the faces of each photo, writes an annotated copy and aligns every face with the
/// `align` code path (`--detect_multiple_faces`, margin 44, 182 px).
fn align_photos(paths: &[PathBuf], mtcnn: &crate::align::Mtcnn, out: &Path) -> Result<Vec<PhotoResult>> {
    let photo_root = out.join("photos");
    let class_dir = photo_root.join("samples");
    let aligned = out.join("aligned");
    let mut results = Vec::new();
    for p in paths {
        let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let copy = class_dir.join(&name);
        if !copy.is_file() {
            write_atomic(&copy, &std::fs::read(p)?)?;
        }
        let img = load_rgb(p)?;
        let faces = mtcnn.detect(&img);
        let annotated = out.join("annotated").join(format!("{}.png", Path::new(&name).file_stem().unwrap_or_default().to_string_lossy()));
        let a = draw::annotate(&img, &faces);
        let png = crate::report::html::encode_png(&a).context("cannot encode annotated photo")?;
        write_atomic(&annotated, &png)?;
        println!("  {name} ({}x{}): {} face(s) found", img.width(), img.height(), faces.len());
        results.push(PhotoResult { photo: p.clone(), faces, annotated, crops: Vec::new() });
    }
    let opts = AlignOptions {
        input_dir: photo_root.display().to_string(),
        output_dir: aligned.clone(),
        image_size: 182,
        margin: 44.0,
        detect_multiple_faces: true,
        random_order: false,
        shard: None,
        progress: false,
    };
    let summary = align_dataset(&opts, mtcnn)?;
    println!("  aligned crops: {} new, {} already there -> {}", summary.faces_written, summary.existing, aligned.display());
    for r in &mut results {
        let stem = r.photo.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let mut crops: Vec<PathBuf> =
            std::fs::read_dir(aligned.join("samples")).map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect()).unwrap_or_default();
        crops.retain(|c| c.file_stem().map(|s| s.to_string_lossy().starts_with(&stem)).unwrap_or(false));
        crops.sort();
        r.crops = crops;
    }
    Ok(results)
}
