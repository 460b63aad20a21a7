//! `facenet bench`: speed of the product's own code paths (the same functions `synth`,
//! `embed`, `validate` and training call), printed as a summary and one JSON line, so runs
//! can be compared side by side with a peer (e.g. PyTorch) on the same machine.

use std::time::Instant;

use anyhow::Result;
use burn::prelude::*;
use clap::{Args, Subcommand};
use image::RgbImage;

use burn::tensor::Distribution;

use crate::data::preprocess::Standardization;
use crate::eval::embed::{embed_images, EmbedOptions};
use crate::model::registry::{model_from_def, ModelOptions};
use crate::synth::{identity_params, image_nuisance, render::render_face, SynthConfig};
use crate::train::{TrainOptions, TrainStep};
use crate::util::cpu::cpu_info;
use crate::util::device::{ChosenDevice, DeviceArg, DeviceSpec};
use crate::util::median;

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub what: BenchWhat,
}

#[derive(Subcommand, Debug)]
pub enum BenchWhat {
    /// Embedding images/s (preprocessing included) with a randomly initialised network
    Embed(EmbedBench),
    /// Synthetic image rendering + PNG encoding, images/s
    Synth(SynthBench),
    /// Training steps/s: forward, softmax + center loss + weight decay, backward, RMSProp
    Train(TrainBench),
    /// MTCNN alignment of photos (decode, detect, crop, PNG), images/s and per-stage times
    Align(AlignBenchArgs),
}

#[derive(Args, Debug)]
pub struct AlignBenchArgs {
    #[command(flatten)]
    pub device: DeviceArg,
    /// Photos to align (default: the demo's sample photos)
    pub images: Vec<std::path::PathBuf>,
    /// Timed passes over the photos (after one warm-up pass)
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
}

#[derive(Args, Debug)]
pub struct TrainBench {
    #[command(flatten)]
    pub device: DeviceArg,
    #[arg(long, default_value = "inception_resnet_v1")]
    pub model_def: String,
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 160)]
    pub image_size: usize,
    #[arg(long, default_value_t = 1000)]
    pub num_classes: usize,
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    #[arg(long, default_value_t = 5)]
    pub steps: usize,
}

#[derive(Args, Debug)]
pub struct EmbedBench {
    #[command(flatten)]
    pub device: DeviceArg,
    #[arg(long, default_value = "inception_resnet_v1")]
    pub model_def: String,
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 160)]
    pub image_size: u32,
    #[arg(long, default_value_t = 128)]
    pub embedding_size: usize,
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    #[arg(long, default_value_t = 5)]
    pub steps: usize,
}

#[derive(Args, Debug)]
pub struct SynthBench {
    #[arg(long, default_value_t = 1000)]
    pub images: usize,
    #[arg(long, default_value_t = 182)]
    pub image_size: u32,
}

pub fn run(a: BenchArgs) -> Result<()> {
    let cpu = cpu_info();
    println!("CPU: {} ({} logical), {}; GEMM kernels: {}", cpu.model, cpu.cpus, cpu.isa.join(" "), cpu.gemm_kernels);
    match a.what {
        BenchWhat::Embed(b) => embed(b),
        BenchWhat::Synth(b) => synth(b),
        BenchWhat::Train(b) => train(b),
        BenchWhat::Align(b) => align(b),
    }
}

/// Prints a benchmark's JSON line with the CPU it ran on (`"cpu"`: model, instruction sets,
/// GEMM kernels) and the device it computed on (`"device"`, `"device_name"`), so that every
/// figure says where it was measured.
fn emit(device: &ChosenDevice, mut v: serde_json::Value) {
    v["cpu"] = serde_json::to_value(cpu_info()).unwrap_or_default(); // cheap: one /proc read
    v["threads"] = rayon::current_num_threads().into();
    v["device"] = device.spec.to_string().into();
    v["device_name"] = device.description.clone().into();
    println!("{v}");
}

/// Peak resident memory of this process in MiB (Linux), if known.
pub fn peak_rss_mib() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Face-like input images (182 px synthetic faces) for benchmarks.
pub fn bench_images(n: usize, size: u32) -> Vec<RgbImage> {
    (0..n)
        .map(|i| {
            let f = identity_params(666, i % 50);
            render_face(&f, &image_nuisance(666, i % 50, i), size).unwrap_or_else(|| RgbImage::new(size, size))
        })
        .collect()
}

fn embed(b: EmbedBench) -> Result<()> {
    let chosen = b.device.open()?;
    let device = chosen.device.clone();
    let opts = ModelOptions { embedding_size: b.embedding_size, keep_probability: 1.0, num_classes: 0 };
    // as `facenet embed` loads a model: inference mode, batch norms folded
    let model = model_from_def(&b.model_def, &opts, &device)?.valid().fold_batch_norm();
    let images = bench_images(b.batch_size, b.image_size + 22);
    let eo = EmbedOptions {
        image_size: b.image_size,
        batch_size: b.batch_size,
        standardization: Standardization::PerImage,
        use_flipped_images: false,
    };
    let mut times = Vec::new();
    for i in 0..b.warmup + b.steps {
        let t = Instant::now();
        let e = embed_images(&model, &images, &eo, &device);
        std::hint::black_box(e);
        if i >= b.warmup {
            times.push(t.elapsed().as_secs_f64());
        }
    }
    let med = median(&times);
    let ips = b.batch_size as f64 / med;
    println!(
        "bench embed: {} at {}x{}, batch {}: {:.1} images/s (median of {} batches, {:.3} s each), peak memory {:.0} MiB, {} threads",
        b.model_def,
        b.image_size,
        b.image_size,
        b.batch_size,
        ips,
        b.steps,
        med,
        peak_rss_mib().unwrap_or(f64::NAN),
        rayon::current_num_threads()
    );
    emit(
        &chosen,
        serde_json::json!({"bench": "embed", "model_def": b.model_def, "batch_size": b.batch_size, "image_size": b.image_size,
            "batch_s": times, "images_per_s_median": ips, "peak_rss_mib": peak_rss_mib()}),
    );
    Ok(())
}

fn synth(b: SynthBench) -> Result<()> {
    use rayon::prelude::*;
    let cfg = SynthConfig { image_size: b.image_size, ..SynthConfig::default() };
    let faces: Vec<_> = (0..50).map(|k| identity_params(cfg.seed, k)).collect();
    let t = Instant::now();
    let bytes: usize = (0..b.images)
        .into_par_iter()
        .map(|i| crate::synth::render_png(&cfg, &faces[i % 50], i % 50, i).map(|p| p.len()).unwrap_or(0))
        .sum();
    let s = t.elapsed().as_secs_f64();
    println!(
        "bench synth: {} images of {}x{} rendered + PNG-encoded in {:.2} s: {:.0} images/s ({} threads, {:.1} KiB/image)",
        b.images,
        b.image_size,
        b.image_size,
        s,
        b.images as f64 / s,
        rayon::current_num_threads(),
        bytes as f64 / b.images as f64 / 1024.0
    );
    emit(
        &DeviceSpec::Cpu.open()?,
        serde_json::json!({"bench": "synth", "images": b.images, "image_size": b.image_size, "seconds": s, "images_per_s": b.images as f64 / s}),
    );
    Ok(())
}

/// The training step of `facenet train` ([`TrainStep`]: same loss, optimiser and centre
/// update) on random input, timed.
fn train(b: TrainBench) -> Result<()> {
    let chosen = b.device.open()?;
    let device = chosen.device.clone();
    let ad = device.clone().autodiff();
    // the reference's CASIA-WebFace recipe
    let recipe = TrainOptions::parse_from([
        "--optimizer",
        "RMSPROP",
        "--keep_probability",
        "0.8",
        "--weight_decay",
        "5e-5",
        "--center_loss_factor",
        "1e-2",
        "--center_loss_alfa",
        "0.9",
    ])?;
    let opts =
        ModelOptions { embedding_size: recipe.embedding_size, keep_probability: recipe.keep_probability, num_classes: b.num_classes };
    let model = model_from_def(&b.model_def, &opts, &ad)?;
    let mut step = TrainStep::from_options(&recipe, model, b.num_classes, opts.embedding_size, &device);
    let (n, s) = (b.batch_size, b.image_size);
    let labels: Vec<i64> = (0..n as i64).map(|i| i % b.num_classes as i64).collect();
    let mut times = Vec::new();
    for i in 0..b.warmup + b.steps {
        // the batch comes ready from the loader's prefetch in training (and the peer
        // benchmark makes its input outside the timed step too)
        let x = Tensor::<4>::random([n, 3, s, s], Distribution::Normal(0.0, 1.0), &ad);
        let t = Instant::now();
        let values = step.run(x, &labels, 0.01)?;
        std::hint::black_box(values);
        if i >= b.warmup {
            times.push(t.elapsed().as_secs_f64());
        }
    }
    let med = median(&times);
    let ips = n as f64 / med;
    println!(
        "bench train: {} at {s}x{s}, batch {n}, {} classes: {:.2} images/s (median of {} steps, {:.3} s each), peak memory {:.0} MiB",
        b.model_def,
        b.num_classes,
        ips,
        b.steps,
        med,
        peak_rss_mib().unwrap_or(f64::NAN)
    );
    emit(
        &chosen,
        serde_json::json!({"bench": "train", "model_def": b.model_def, "batch_size": n, "image_size": s,
            "step_s": times, "images_per_s_median": ips, "peak_rss_mib": peak_rss_mib()}),
    );
    Ok(())
}

fn align(b: AlignBenchArgs) -> Result<()> {
    let images = if b.images.is_empty() { crate::demo::samples::ensure_samples()? } else { b.images };
    let chosen = b.device.open()?;
    let mtcnn = crate::align::load_detector(crate::align::DetectorConfig::default(), &chosen.device)?;
    let r = crate::align::bench_align(&images, &mtcnn, b.repeats)?;
    print!("bench {r}");
    emit(
        &chosen,
        serde_json::json!({"bench": "align", "images": r.images, "repeats": r.repeats, "images_per_s": r.images_per_s(),
            "s_per_image": r.per_image(r.total), "detect_median_s": r.detect_median_s(), "pyramid_s": r.per_image(r.stages.pyramid), "pnet_s": r.per_image(r.stages.pnet),
            "rnet_s": r.per_image(r.stages.rnet), "onet_s": r.per_image(r.stages.onet), "peak_rss_mib": peak_rss_mib()}),
    );
    Ok(())
}
