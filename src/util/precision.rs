//! `--precision`: what a command's matrix products (convolutions, fully connected layers)
//! compute with. `f32` everywhere by default; `bf16` rounds both inputs of every product to
//! bfloat16 and accumulates in f32, as PyTorch's bf16 autocast does on a CPU: weights,
//! optimiser state, batch norm, losses and every other operation stay f32 (the f32 "master
//! weights" of mixed-precision training come for free).
//!
//! Two implementations: on the CPU backend, the GEMMs round their inputs (CPUs with AVX-512
//! BF16, `vdpbf16ps`: Intel Cooper Lake, Sapphire Rapids and later, AMD Zen 4 and later); on a
//! GPU backend whose device has a bf16 type (CUDA GPUs from Ampere on; not WGSL, so not the
//! `wgpu` feature), the convolutions cast to bf16 and back ([`crate::model::autocast`]; the
//! fully connected layers stay f32). Anywhere else `bf16` is refused with the reason, never
//! silently run in f32.
//!
//! `f16` casts the convolutions to float16 the same way, on any device with the type (the
//! Vulkan GPUs `bf16` misses included); its narrow exponent range needs the loss scaled during
//! training ([`crate::train::loss_scale`]). On the CPU backend it works but is slower than f32
//! (no f16 kernels): meant for GPUs, and for testing the mechanism anywhere.
//!
//! Set once, at a command's edge, for the whole process.

use std::sync::atomic::{AtomicU8, Ordering};

use burn::tensor::FloatDType;

use std::fmt;
use std::str::FromStr;

use super::device::ChosenDevice;

/// A `--precision` value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Precision {
    #[default]
    F32,
    Bf16,
    /// Convolutions in f16 with dynamic loss scaling (GPU backends; see crate::model::autocast).
    F16,
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
            Precision::F16 => "f16",
        })
    }
}

impl FromStr for Precision {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "f32" | "fp32" | "float32" => Ok(Precision::F32),
            "bf16" | "bfloat16" => Ok(Precision::Bf16),
            "f16" | "fp16" | "float16" | "half" => Ok(Precision::F16),
            other => Err(format!("--precision '{other}': expected f32, bf16 or f16")),
        }
    }
}

impl serde::Serialize for Precision {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Precision {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PrecisionError {
    #[error(
        "--precision bf16 needs a CPU with AVX-512 BF16 (Intel Cooper Lake, Sapphire Rapids or later; AMD Zen 4 or later); this one ({cpu}) has not: use --precision f32"
    )]
    NoBf16Cpu { cpu: String },
    #[error("--precision bf16 needs a bf16 type on the device, and {device} has none (the `wgpu` feature's WGSL has none; CUDA GPUs from Ampere on have it): use --precision f16 or f32")]
    Backend { device: String },
    #[error("--precision f16 needs an f16 type on the device, and {device} has none: use --precision f32")]
    NoF16 { device: String },
}

/// `--precision`, as the commands that run a network take it.
#[derive(clap::Args, Clone, Copy, Debug, Default, PartialEq)]
pub struct PrecisionArg {
    /// What matrix products compute with: f32; bf16 (inputs rounded to bfloat16, f32
    /// accumulation, everything else f32; CPU backend on CPUs with AVX-512 BF16, GPU backends
    /// whose device has a bf16 type); or f16 (convolutions in float16, training with dynamic
    /// loss scaling; meant for GPUs, on the CPU backend slower than f32)
    #[arg(long, default_value = "f32")]
    pub precision: Precision,
}

/// Whether matrix products can compute in `p` on `chosen`, and if not, why.
pub fn check_precision(p: Precision, chosen: &ChosenDevice) -> Result<(), PrecisionError> {
    if p == Precision::F32 {
        return Ok(());
    }
    if p == Precision::F16 {
        if chosen.device.supports_dtype(FloatDType::F16) {
            return Ok(());
        }
        return Err(PrecisionError::NoF16 { device: chosen.description.clone() });
    }
    if !chosen.is_cpu() {
        if chosen.device.supports_dtype(FloatDType::BF16) {
            return Ok(());
        }
        return Err(PrecisionError::Backend { device: chosen.description.clone() });
    }
    #[cfg(feature = "flex")]
    if burn_flex::bf16_supported() {
        return Ok(());
    }
    Err(PrecisionError::NoBf16Cpu { cpu: super::cpu::cpu_info().model })
}

/// Makes every later matrix product of this process compute in `p` on `chosen` (the
/// command's one device), or says why it cannot (and changes nothing). Every command that runs
/// a network calls it at its edge: Inception-ResNet (`train`, `embed`, `validate`, `compare`,
/// `demo`, `bench train|embed`) with the `--precision` asked for, MTCNN (`align`, `detect`,
/// `bench align`, the demo's photos) with f32.
///
/// With f32 on the CPU backend it also turns on the Winograd kernels: F(4x4, 3x3) for the 3x3
/// stride-1 convolutions of at least 16 channels in and out, their input and weight gradients,
/// and F(4, 7) for the 1x7 and 7x1 ones and their input gradients (2.5-4x faster per layer;
/// equal up to rounding, order 1e-6..1e-5 relative, not bit for bit; same bits run to run),
/// unless `$FACENET_WINOGRAD` is `0`, `off`, `false` or `no`.
pub fn set_precision(p: Precision, chosen: &ChosenDevice) -> Result<(), PrecisionError> {
    check_precision(p, chosen)?;
    set_autocast(match p {
        Precision::F32 => None,
        Precision::Bf16 => (!chosen.is_cpu()).then_some(FloatDType::BF16),
        Precision::F16 => Some(FloatDType::F16),
    });
    #[cfg(feature = "flex")]
    {
        burn_flex::set_gemm_precision(match p {
            Precision::F32 => burn_flex::GemmPrecision::F32,
            Precision::Bf16 => burn_flex::GemmPrecision::Bf16,
            Precision::F16 => burn_flex::GemmPrecision::F32,
        });
        burn_flex::set_conv_winograd(
            p == Precision::F32 && chosen.is_cpu() && winograd_allowed(std::env::var("FACENET_WINOGRAD").ok().as_deref()),
        );
    }
    Ok(())
}

/// Whether `$FACENET_WINOGRAD` (given as `value`) leaves the Winograd kernel on: anything but
/// `0`, `off`, `false`, `no`.
fn winograd_allowed(value: Option<&str>) -> bool {
    !matches!(value.map(|v| v.trim().to_ascii_lowercase()).as_deref(), Some("0" | "off" | "false" | "no"))
}

/// Whether the 3x3 stride-1 convolutions run as Winograd now (what [`set_precision`] set
/// last).
pub fn winograd_on() -> bool {
    #[cfg(feature = "flex")]
    if burn_flex::conv_winograd() {
        return true;
    }
    false
}

/// How matrix products compute now, for headers: `f32`, `bf16`, or `f32, Winograd 3x3`.
pub fn describe_products() -> String {
    let p = current_precision();
    if let Some(dt) = autocast_dtype() {
        let t = if dt == FloatDType::F16 { "f16" } else { "bf16" };
        return format!("{t} matrix products (convolutions cast to {t}; fully connected layers f32)");
    }
    if winograd_on() && p == Precision::F32 {
        format!("{p} matrix products, Winograd 3x3 convolutions")
    } else {
        format!("{p} matrix products")
    }
}

/// The float type the convolutions cast to ([`crate::model::autocast`]): 0 none, 1 bf16, 2 f16.
static AUTOCAST: AtomicU8 = AtomicU8::new(0);

/// The float type convolutions cast to, if any (what [`set_precision`] set last: bf16 on a
/// GPU backend, f16 anywhere).
pub fn autocast_dtype() -> Option<FloatDType> {
    match AUTOCAST.load(Ordering::Relaxed) {
        1 => Some(FloatDType::BF16),
        2 => Some(FloatDType::F16),
        _ => None,
    }
}

/// Makes the convolutions of this process cast to `dtype` (bf16, f16, or `None`; any other
/// type counts as `None`). [`set_precision`] calls it; tests call it to run the GPU mechanism on
/// the CPU backend.
pub fn set_autocast(dtype: Option<FloatDType>) {
    let v = match dtype {
        Some(FloatDType::BF16) => 1,
        Some(FloatDType::F16) => 2,
        _ => 0,
    };
    AUTOCAST.store(v, Ordering::Relaxed);
}

/// The precision matrix products compute in now (what [`set_precision`] set last).
pub fn current_precision() -> Precision {
    match autocast_dtype() {
        Some(FloatDType::F16) => return Precision::F16,
        Some(_) => return Precision::Bf16,
        None => {}
    }
    #[cfg(feature = "flex")]
    if burn_flex::gemm_precision() == burn_flex::GemmPrecision::Bf16 && burn_flex::bf16_supported() {
        return Precision::Bf16;
    }
    Precision::F32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn winograd_switch_reads_the_environment_value() {
        assert!(winograd_allowed(None));
        assert!(winograd_allowed(Some("1")));
        assert!(!winograd_allowed(Some("0")));
        assert!(!winograd_allowed(Some(" OFF ")));
        assert!(!winograd_allowed(Some("false")));
    }

    #[test]
    fn parses_and_prints() {
        assert_eq!("bf16".parse::<Precision>().unwrap(), Precision::Bf16);
        assert_eq!("F32".parse::<Precision>().unwrap(), Precision::F32);
        assert_eq!("fp16".parse::<Precision>().unwrap(), Precision::F16);
        assert!("f8".parse::<Precision>().unwrap_err().contains("expected f32, bf16 or f16"));
        assert_eq!(Precision::Bf16.to_string(), "bf16");
    }

    // Setting bf16 here would change the products of the other unit tests running beside
    // this one (the precision is process-wide): tests/precision.rs runs the binary instead.
}
