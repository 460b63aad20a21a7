//! `facenet bench`: speed of the product's own code paths (the same functions `synth`,
//! `embed`, `validate` and training call), printed as a summary and one JSON line, so runs
//! can be compared side by side with a peer (e.g. PyTorch) on the same machine.

use std::time::Instant;

use anyhow::{anyhow, Result};
use burn::prelude::*;
use clap::{Args, Subcommand};
use image::RgbImage;

use burn::tensor::Distribution;

use super::limits::{self, MAX_CLASSES, MAX_COUNT, MAX_CROP_SIZE, MAX_EMBEDDING_SIZE, MAX_IMAGE_SIZE};
use crate::data::preprocess::Standardization;
use crate::eval::embed::{embed_images, EmbedOptions};
use crate::model::registry::{config_from_def, model_from_def, ModelOptions};
use crate::synth::{identity_params, image_nuisance, render::render_face, SynthConfig};
use crate::train::loss_scale::LossScale;
use crate::train::step_window::{Settled, StepWindow};
use crate::train::trainer::default_sync_every;
use crate::train::{StepError, TrainOptions, TrainStep};
use crate::util::cpu::cpu_info;
use crate::util::device::{ChosenDevice, DeviceArg, DeviceSpec};
use crate::util::devices::DeviceList;
use crate::util::median;
use crate::util::precision::{current_precision, set_precision, winograd_on, Precision, PrecisionArg};

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
    /// The training input pipeline alone (decode, random crop + flip, standardise on
    /// --nrof_preprocess_threads workers), images/s and per thread: what can feed a GPU
    Loader(LoaderBenchArgs),
    /// The same weights on the CPU and on --device: lowest embedding cosine, first- and
    /// second-step training loss of each (a GPU backend's correctness check)
    Parity(ParityBench),
}

#[derive(Args, Debug)]
pub struct ParityBench {
    #[command(flatten)]
    pub device: DeviceArg,
    #[arg(long, default_value = "inception_resnet_v1")]
    pub model_def: String,
    #[arg(long, default_value_t = 8, value_parser = limits::batch_size())]
    pub batch_size: usize,
    #[arg(long, default_value_t = 160, value_parser = limits::usize_in(1, MAX_IMAGE_SIZE as usize))]
    pub image_size: usize,
    #[arg(long, default_value_t = 100, value_parser = limits::usize_in(0, MAX_CLASSES))]
    pub num_classes: usize,
}

#[derive(Args, Debug)]
pub struct LoaderBenchArgs {
    /// Aligned face crops, one folder per identity [default: 256 synthetic 182 px PNG crops in
    /// a temporary folder]
    #[arg(long)]
    pub data_dir: Option<String>,
    #[arg(long, default_value_t = 90, value_parser = limits::batch_size())]
    pub batch_size: usize,
    #[arg(long, default_value_t = 160, value_parser = limits::image_size())]
    pub image_size: u32,
    /// Batches per measurement
    #[arg(long, default_value_t = 20, value_parser = limits::count())]
    pub batches: usize,
    /// Worker threads [default: 1, then every logical CPU]
    #[arg(long, value_parser = limits::threads())]
    pub nrof_preprocess_threads: Option<usize>,
    /// Also --random_rotate (the reference's CASIA recipe crops and flips only)
    #[arg(long)]
    pub random_rotate: bool,
}

#[derive(Args, Debug)]
pub struct AlignBenchArgs {
    #[command(flatten)]
    pub device: DeviceArg,
    /// Photos to align (default: the demo's sample photos)
    pub images: Vec<std::path::PathBuf>,
    /// Timed passes over the photos (after one warm-up pass)
    #[arg(long, default_value_t = 3, value_parser = limits::count())]
    pub repeats: usize,
}

#[derive(Args, Debug)]
pub struct TrainBench {
    #[command(flatten)]
    pub device: DeviceArg,
    #[command(flatten)]
    pub precision: PrecisionArg,
    #[arg(long, default_value = "inception_resnet_v1")]
    pub model_def: String,
    #[arg(long, default_value_t = 32, value_parser = limits::batch_size())]
    pub batch_size: usize,
    #[arg(long, default_value_t = 160, value_parser = limits::usize_in(1, MAX_IMAGE_SIZE as usize))]
    pub image_size: usize,
    #[arg(long, default_value_t = 1000, value_parser = limits::usize_in(0, MAX_CLASSES))]
    pub num_classes: usize,
    #[arg(long, default_value_t = 2, value_parser = limits::usize_in(0, MAX_COUNT))]
    pub warmup: usize,
    #[arg(long, default_value_t = 5, value_parser = limits::count())]
    pub steps: usize,
    /// Data-parallel replicas as `facenet train --devices` runs them (e.g. cpu:0,cpu:1):
    /// times the step on one device and on the replicas with the same global --batch_size,
    /// and reports the scaling efficiency (replaces --device)
    #[arg(long)]
    pub devices: Option<DeviceList>,
    /// Read the steps' loss values back every N steps, as `facenet train --sync_every` does
    /// (each step's time is then its window's over N); default: 1 on the CPU, 10 on a GPU
    #[arg(long, value_parser = limits::usize_in(1, MAX_COUNT))]
    pub sync_every: Option<usize>,
}

#[derive(Args, Debug)]
pub struct EmbedBench {
    #[command(flatten)]
    pub device: DeviceArg,
    #[command(flatten)]
    pub precision: PrecisionArg,
    #[arg(long, default_value = "inception_resnet_v1")]
    pub model_def: String,
    #[arg(long, default_value_t = 32, value_parser = limits::batch_size())]
    pub batch_size: usize,
    #[arg(long, default_value_t = 160, value_parser = limits::image_size())]
    pub image_size: u32,
    #[arg(long, default_value_t = 128, value_parser = limits::usize_in(1, MAX_EMBEDDING_SIZE))]
    pub embedding_size: usize,
    #[arg(long, default_value_t = 2, value_parser = limits::usize_in(0, MAX_COUNT))]
    pub warmup: usize,
    #[arg(long, default_value_t = 5, value_parser = limits::count())]
    pub steps: usize,
}

#[derive(Args, Debug)]
pub struct SynthBench {
    #[arg(long, default_value_t = 1000, value_parser = limits::count())]
    pub images: usize,
    #[arg(long, default_value_t = 182, value_parser = limits::u32_in(16, MAX_CROP_SIZE))]
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
        BenchWhat::Loader(b) => loader(b),
        BenchWhat::Parity(b) => parity(b),
    }
}

/// Prints a benchmark's JSON line with the CPU it ran on (`"cpu"`: model, instruction sets,
/// GEMM kernels) and the device it computed on (`"device"`, `"device_name"`), so that every
/// figure says where it was measured.
fn emit(device: &ChosenDevice, mut v: serde_json::Value) {
    v["cpu"] = serde_json::to_value(cpu_info()).unwrap_or_default(); // cheap: one /proc read
    if v.get("threads").is_none() {
        v["threads"] = rayon::current_num_threads().into();
    }
    v["device"] = device.spec.to_string().into();
    v["device_name"] = device.description.clone().into();
    v["precision"] = current_precision().to_string().into();
    // the 3x3 stride-1 convolutions as Winograd F(4x4, 3x3) (inference on the CPU)
    v["winograd"] = winograd_on().into();
    println!("{v}");
}

/// Memory the device's allocator holds (reserved pages, MiB), on backends that report it
/// (the GPU ones; not the CPU backend).
fn device_reserved_mib(d: &Device) -> Option<f64> {
    d.memory_pool_usage().map(|u| u.bytes_reserved as f64 / (1024.0 * 1024.0))
}

/// Peak resident memory of this process in MiB (Linux), if known.
pub fn peak_rss_mib() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Refuses an `--image_size` too small for the network (a clear error instead of a failure
/// inside the first layer that pads `VALID`).
fn check_input(model_def: &str, opts: &ModelOptions, image_size: usize) -> Result<()> {
    config_from_def(model_def, opts)?.cost(image_size).map_err(|e| anyhow!("--image_size {image_size}: {e} ({model_def})"))?;
    Ok(())
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
    set_precision(b.precision.precision, &chosen)?;
    let device = chosen.device.clone();
    let opts = ModelOptions { embedding_size: b.embedding_size, keep_probability: 1.0, num_classes: 0 };
    check_input(&b.model_def, &opts, b.image_size as usize)?;
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
    let mut device_mib = 0f64;
    for i in 0..b.warmup + b.steps {
        let t = Instant::now();
        let e = embed_images(&model, &images, &eo, &device);
        std::hint::black_box(e);
        if i >= b.warmup {
            times.push(t.elapsed().as_secs_f64());
        }
        device_mib = device_mib.max(device_reserved_mib(&device).unwrap_or(0.0));
    }
    let med = median(&times);
    let ips = b.batch_size as f64 / med;
    println!(
        "bench embed: {} at {}x{}, batch {}, {}: {:.1} images/s (median of {} batches, {:.3} s each), peak memory {:.0} MiB, {} threads",
        b.model_def,
        b.image_size,
        b.image_size,
        b.batch_size,
        current_precision(),
        ips,
        b.steps,
        med,
        peak_rss_mib().unwrap_or(f64::NAN),
        rayon::current_num_threads()
    );
    emit(
        &chosen,
        serde_json::json!({"bench": "embed", "model_def": b.model_def, "batch_size": b.batch_size, "image_size": b.image_size,
            "batch_s": times, "images_per_s_median": ips, "peak_rss_mib": peak_rss_mib(), "device_reserved_mib_max": device_mib}),
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
/// update) on random input, timed; with `--devices`, on one device and on the replicas.
fn train(b: TrainBench) -> Result<()> {
    let spec = match &b.devices {
        Some(list) => crate::train::data_parallel::check_devices(list)?,
        None => b.device.device,
    };
    let chosen = spec.open()?;
    set_precision(b.precision.precision, &chosen)?;
    let replicas = b.devices.as_ref().map_or(1, DeviceList::replicas);
    if replicas > b.batch_size {
        return Err(anyhow!("--devices: {replicas} replicas need a --batch_size of at least {replicas} (it is the global batch)"));
    }
    let sync_every = b.sync_every.unwrap_or(default_sync_every(chosen.is_cpu()));
    let one = time_train_steps(&b, &chosen, 1, sync_every)?;
    let (n, s) = (b.batch_size, b.image_size);
    println!(
        "bench train: {} at {s}x{s}, batch {n}, {} classes, {}: {:.2} images/s (median of {} steps, {:.3} s each, read back every {sync_every}), peak memory {:.0} MiB",
        b.model_def,
        b.num_classes,
        current_precision(),
        one.images_per_s,
        b.steps,
        one.median_s,
        peak_rss_mib().unwrap_or(f64::NAN)
    );
    let mut v = serde_json::json!({"bench": "train", "model_def": b.model_def, "batch_size": n, "image_size": s, "sync_every": sync_every,
        "step_s": one.times, "images_per_s_median": one.images_per_s, "peak_rss_mib": peak_rss_mib(), "device_reserved_mib_max": one.device_mib});
    if let Some(list) = &b.devices {
        let many = time_train_steps(&b, &chosen, replicas, sync_every)?;
        // devices that compute at the same time: CPU replicas take turns on the one CPU
        let devices = list.distinct_devices().len();
        let efficiency = many.images_per_s / (devices as f64 * one.images_per_s);
        println!(
            "bench train --devices {list}: {:.2} images/s on {replicas} replicas ({devices} device(s), {} to {} images each), scaling efficiency {:.3} (images/s over {devices} x one device's)",
            many.images_per_s,
            n / replicas,
            n.div_ceil(replicas),
            efficiency
        );
        v["devices"] = list.to_string().into();
        v["replicas"] = replicas.into();
        v["replica_step_s"] = many.times.into();
        v["replica_images_per_s_median"] = many.images_per_s.into();
        v["scaling_efficiency"] = efficiency.into();
    }
    emit(&chosen, v);
    Ok(())
}

struct StepTimes {
    times: Vec<f64>,
    median_s: f64,
    images_per_s: f64,
    device_mib: f64,
}

/// `--warmup` + `--steps` training steps of a fresh network shared among `replicas`, the
/// timed ones read back `sync_every` at a time (each step's time is its window's share).
fn time_train_steps(b: &TrainBench, chosen: &ChosenDevice, replicas: usize, sync_every: usize) -> Result<StepTimes> {
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
    check_input(&b.model_def, &opts, b.image_size)?;
    let model = model_from_def(&b.model_def, &opts, &ad)?;
    let loss_scale = LossScale::for_precision(b.precision.precision);
    let mut step = TrainStep::from_options(&recipe, model, b.num_classes, opts.embedding_size, &device)
        .with_replicas(replicas)
        .with_loss_scale(loss_scale);
    let (n, s) = (b.batch_size, b.image_size);
    let labels: Vec<i64> = (0..n as i64).map(|i| i % b.num_classes as i64).collect();
    // the batch comes ready from the loader's prefetch in training (and the peer benchmark
    // makes its input outside the timed step too)
    let batch = || Tensor::<4>::random([n, 3, s, s], Distribution::Normal(0.0, 1.0), &ad);
    let mut device_mib = 0f64;
    // one step at a time, as training does (f16: a step whose scaled gradients overflow only
    // lowers the loss scale)
    let single = |step: &mut TrainStep, x: Tensor<4>| match step.run(x, &labels, 0.01) {
        Ok(v) => Ok(std::hint::black_box(v).total),
        Err(StepError::Overflow { .. }) => Ok(f64::NAN),
        Err(e) => Err(anyhow!("a benchmark step failed: {e}")),
    };
    for _ in 0..b.warmup {
        single(&mut step, batch())?;
        device_mib = device_mib.max(device_reserved_mib(&device).unwrap_or(0.0));
    }
    let mut times = Vec::new();
    let mut window = StepWindow::new();
    while times.len() < b.steps {
        let k = sync_every.min(b.steps - times.len());
        let xs: Vec<_> = (0..k).map(|_| batch()).collect();
        let t = Instant::now();
        for x in &xs {
            window.push(&mut step, x.clone(), &labels, 0.01)?;
        }
        if let Settled::Undone = window.settle(&mut step) {
            // a non-finite step: the window again, one step at a time, as training does
            for x in xs {
                single(&mut step, x)?;
            }
        }
        times.extend(std::iter::repeat_n(t.elapsed().as_secs_f64() / k as f64, k));
        device_mib = device_mib.max(device_reserved_mib(&device).unwrap_or(0.0));
    }
    let median_s = median(&times);
    Ok(StepTimes { images_per_s: n as f64 / median_s, times, median_s, device_mib })
}

fn align(b: AlignBenchArgs) -> Result<()> {
    let images = if b.images.is_empty() { crate::demo::samples::ensure_samples()? } else { b.images };
    let chosen = b.device.open()?;
    set_precision(Precision::F32, &chosen)?;
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

fn loader(b: LoaderBenchArgs) -> Result<()> {
    use crate::data::augment::Augment;
    use crate::data::dataset::Dataset;
    use crate::data::loader::{paths_and_labels, LoaderConfig};
    use crate::data::loader_bench::bench_loader;
    let mut tmp = None;
    let paths = match &b.data_dir {
        Some(d) => {
            let ds = Dataset::open(d)?;
            paths_and_labels(&ds.classes).0
        }
        None => {
            use rayon::prelude::*;
            let dir = tempfile_dir()?;
            tmp = Some(dir.clone());
            let cfg = SynthConfig { image_size: 182, ..SynthConfig::default() };
            let faces: Vec<_> = (0..16).map(|k| identity_params(cfg.seed, k)).collect();
            (0..256)
                .into_par_iter()
                .map(|i| {
                    let p = dir.join(format!("{i:04}.png"));
                    std::fs::write(&p, crate::synth::render_png(&cfg, &faces[i % 16], i % 16, i)?)?;
                    Ok(p)
                })
                .collect::<Result<Vec<_>>>()?
        }
    };
    anyhow::ensure!(!paths.is_empty(), "no images in --data_dir");
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let counts = match b.nrof_preprocess_threads {
        Some(t) => vec![t.max(1)],
        None if cpus > 1 => vec![1, cpus],
        None => vec![1],
    };
    let cpu_device = DeviceSpec::Cpu.open()?;
    for threads in counts {
        let cfg = LoaderConfig {
            augment: Augment { image_size: b.image_size, random_rotate: b.random_rotate, random_crop: true, random_flip: true },
            standardization: Standardization::PerImage,
            threads,
            seed: 666,
        };
        let r = bench_loader(&paths, cfg, b.batch_size, b.batches);
        println!(
            "bench loader: {} images ({} files) to {}x{} in {:.2} s with {} thread(s): {:.0} images/s, {:.0} per thread{}",
            r.images,
            paths.len(),
            b.image_size,
            b.image_size,
            r.seconds,
            r.threads,
            r.images_per_s,
            r.images_per_s_per_thread,
            if r.skipped > 0 { format!(" ({} skipped: unreadable)", r.skipped) } else { String::new() }
        );
        let mut v = serde_json::to_value(&r)?;
        v["bench"] = "loader".into();
        v["image_size"] = b.image_size.into();
        v["batch_size"] = b.batch_size.into();
        v["random_rotate"] = b.random_rotate.into();
        emit(&cpu_device, v);
    }
    if let Some(dir) = tmp {
        let _ = std::fs::remove_dir_all(dir);
    }
    Ok(())
}

/// A fresh folder under the system's temporary folder.
fn tempfile_dir() -> Result<std::path::PathBuf> {
    let d = std::env::temp_dir().join(format!("facenet-bench-loader-{}", std::process::id()));
    std::fs::create_dir_all(&d)?;
    Ok(d)
}

fn parity(b: ParityBench) -> Result<()> {
    let chosen = b.device.open()?;
    let cpu = DeviceSpec::Cpu.open()?;
    let opts = ModelOptions { embedding_size: 128, keep_probability: 1.0, num_classes: b.num_classes };
    let config = config_from_def(&b.model_def, &opts)?;
    check_input(&b.model_def, &opts, b.image_size)?;
    let p = crate::train::parity::device_parity(&config, &cpu.device, &chosen.device, b.batch_size, b.image_size)?;
    println!(
        "bench parity: {} on {} vs the CPU, batch {} at {}x{}: embedding cosine >= {:.6}; first-step loss {:.6} vs {:.6} (relative {:.2e}), second {:.6} vs {:.6} (relative {:.2e}; the CPU's own second loss moves {:.2e} when the images move by 1e-6)",
        b.model_def,
        chosen.description,
        b.batch_size,
        b.image_size,
        b.image_size,
        p.embedding_cosine_min,
        p.first_step_loss[0],
        p.first_step_loss[1],
        p.first_step_loss_rel,
        p.second_step_loss[0],
        p.second_step_loss[1],
        p.second_step_loss_rel,
        p.second_step_sensitivity
    );
    let mut v = serde_json::to_value(&p)?;
    v["bench"] = "parity".into();
    v["model_def"] = b.model_def.clone().into();
    v["batch_size"] = b.batch_size.into();
    v["image_size"] = b.image_size.into();
    emit(&chosen, v);
    Ok(())
}
