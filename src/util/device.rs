//! `--device`: which backend and which adapter every tensor of a command lives on.
//!
//! The device is chosen once, at a command's edge ([`DeviceSpec::open`]), and handed down;
//! nothing below assumes the CPU backend. Names: `cpu` (burn's flex backend), `vulkan`,
//! `vulkan:N` (N-th discrete GPU), `vulkan:cpu` (a CPU adapter such as Mesa's lavapipe),
//! the same for `wgpu`, `cuda` / `cuda:N`, `tch` / `tch:N` (libtorch CUDA) and `tch:cpu`;
//! `auto` (the default) takes the first GPU an enabled GPU backend finds, else the CPU.
//! Only the backends this binary was built with (cargo features) can be opened; asking for
//! another is a clear error naming the feature, never a panic.

use std::fmt;
use std::str::FromStr;

use burn::tensor::Device;

/// Which adapter of a wgpu-based backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Adapter {
    /// wgpu's own choice: a high-power GPU first.
    Default,
    /// The N-th discrete GPU.
    Gpu(usize),
    /// A CPU adapter (a software Vulkan driver such as lavapipe).
    Cpu,
}

/// A parsed `--device` value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DeviceSpec {
    /// The first GPU of an enabled GPU backend, else the CPU.
    #[default]
    Auto,
    /// burn's flex CPU backend.
    Cpu,
    /// wgpu pinned to Vulkan (SPIR-V kernels).
    Vulkan(Adapter),
    /// wgpu on the graphics API it picks (WGSL kernels).
    Wgpu(Adapter),
    /// CUDA (cubecl), GPU index.
    Cuda(usize),
    /// libtorch: `Some(i)` is CUDA GPU i, `None` libtorch's CPU.
    Tch(Option<usize>),
}

/// The backends this binary was built with, as `--device` names them.
pub fn built_backends() -> Vec<&'static str> {
    let mut v = Vec::new();
    if cfg!(feature = "flex") {
        v.push("cpu");
    }
    if cfg!(feature = "vulkan") {
        v.push("vulkan");
    }
    if cfg!(feature = "wgpu") {
        v.push("wgpu");
    }
    if cfg!(feature = "cuda") {
        v.push("cuda");
    }
    if cfg!(feature = "tch") {
        v.push("tch");
    }
    v
}

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("--device '{0}': expected auto, cpu, vulkan[:N|:cpu], wgpu[:N|:cpu], cuda[:N] or tch[:N|:cpu]")]
    Syntax(String),
    #[error("--device {spec}: this binary was built without the `{feature}` feature (built with: {built}); rebuild with `cargo build --release --features {feature}`")]
    NotBuilt { spec: DeviceSpec, feature: &'static str, built: String },
    #[error("--device {spec}: no such device ({reason})")]
    NotFound { spec: DeviceSpec, reason: String },
}

impl FromStr for DeviceSpec {
    type Err = DeviceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.trim().to_ascii_lowercase();
        let (name, index) = match lower.split_once(':') {
            Some((n, i)) => (n, Some(i)),
            None => (lower.as_str(), None),
        };
        let bad = || DeviceError::Syntax(s.to_string());
        let gpu_index = |i: Option<&str>| -> Result<usize, DeviceError> { i.map_or(Ok(0), |i| i.parse().map_err(|_| bad())) };
        let adapter = |i: Option<&str>| -> Result<Adapter, DeviceError> {
            match i {
                None => Ok(Adapter::Default),
                Some("cpu") => Ok(Adapter::Cpu),
                Some(n) => n.parse().map(Adapter::Gpu).map_err(|_| bad()),
            }
        };
        Ok(match name {
            "auto" | "" if index.is_none() => DeviceSpec::Auto,
            "cpu" | "flex" if index.is_none() => DeviceSpec::Cpu,
            "vulkan" => DeviceSpec::Vulkan(adapter(index)?),
            "wgpu" => DeviceSpec::Wgpu(adapter(index)?),
            "cuda" => DeviceSpec::Cuda(gpu_index(index)?),
            "tch" | "libtorch" => match index {
                Some("cpu") => DeviceSpec::Tch(None),
                i => DeviceSpec::Tch(Some(gpu_index(i)?)),
            },
            _ => return Err(bad()),
        })
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let adapter = |f: &mut fmt::Formatter<'_>, name: &str, a: &Adapter| match a {
            Adapter::Default => write!(f, "{name}"),
            Adapter::Gpu(i) => write!(f, "{name}:{i}"),
            Adapter::Cpu => write!(f, "{name}:cpu"),
        };
        match self {
            DeviceSpec::Auto => write!(f, "auto"),
            DeviceSpec::Cpu => write!(f, "cpu"),
            DeviceSpec::Vulkan(a) => adapter(f, "vulkan", a),
            DeviceSpec::Wgpu(a) => adapter(f, "wgpu", a),
            DeviceSpec::Cuda(i) => write!(f, "cuda:{i}"),
            DeviceSpec::Tch(Some(i)) => write!(f, "tch:{i}"),
            DeviceSpec::Tch(None) => write!(f, "tch:cpu"),
        }
    }
}

impl serde::Serialize for DeviceSpec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for DeviceSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// `--device`, as every command but `train` takes it (`train` has it in its options).
#[derive(clap::Args, Clone, Debug, Default, PartialEq)]
pub struct DeviceArg {
    /// Where to compute: auto (the first GPU an enabled GPU backend finds, else the CPU), cpu,
    /// vulkan[:N|:cpu], wgpu[:N|:cpu], cuda[:N], tch[:N|:cpu] (as built; also $FACENET_DEVICE)
    #[arg(long, default_value = "auto", env = "FACENET_DEVICE")]
    pub device: DeviceSpec,
}

impl DeviceArg {
    pub fn open(&self) -> Result<ChosenDevice, DeviceError> {
        self.device.open()
    }
}

/// An opened device and what it is.
#[derive(Clone, Debug)]
pub struct ChosenDevice {
    /// What was asked for, `auto` resolved.
    pub spec: DeviceSpec,
    pub device: Device,
    /// For people: `cpu (AMD EPYC 9R14, 2 threads)`, `vulkan:0 (NVIDIA H200)`.
    pub description: String,
}

impl ChosenDevice {
    /// Whether tensors live in host memory on burn's CPU backend.
    pub fn is_cpu(&self) -> bool {
        self.spec == DeviceSpec::Cpu
    }
}

impl DeviceSpec {
    /// Resolves `auto` and opens the device; the one place a command's device is made.
    pub fn open(self) -> Result<ChosenDevice, DeviceError> {
        let spec = match self {
            DeviceSpec::Auto => auto(),
            s => s,
        };
        let device = make(spec)?;
        let description = format!("{spec} ({})", describe(spec, &device));
        Ok(ChosenDevice { spec, device, description })
    }
}

fn not_built(spec: DeviceSpec, feature: &'static str) -> DeviceError {
    DeviceError::NotBuilt { spec, feature, built: built_backends().join(", ") }
}

#[allow(unreachable_code, unused_variables)]
fn make(spec: DeviceSpec) -> Result<Device, DeviceError> {
    match spec {
        DeviceSpec::Auto => unreachable!("resolved by open"),
        DeviceSpec::Cpu => {
            #[cfg(feature = "flex")]
            return Ok(Device::flex());
            Err(not_built(spec, "flex"))
        }
        DeviceSpec::Vulkan(a) => {
            #[cfg(feature = "vulkan")]
            return wgpu_checked(spec, Device::vulkan(kind(a)));
            Err(not_built(spec, "vulkan"))
        }
        DeviceSpec::Wgpu(a) => {
            #[cfg(feature = "wgpu")]
            return wgpu_checked(spec, Device::wgpu(kind(a)));
            Err(not_built(spec, "wgpu"))
        }
        DeviceSpec::Cuda(i) => {
            #[cfg(feature = "cuda")]
            {
                let n = Device::enumerate(burn::tensor::DeviceType::Cuda).len();
                if i >= n {
                    return Err(DeviceError::NotFound { spec, reason: format!("{n} CUDA device(s) found") });
                }
                return Ok(Device::cuda(i));
            }
            Err(not_built(spec, "cuda"))
        }
        DeviceSpec::Tch(i) => {
            #[cfg(feature = "tch")]
            #[allow(deprecated)] // burn 0.22 marks its libtorch backend deprecated; it is cuDNN's way in
            return Ok(match i {
                Some(i) => Device::libtorch_cuda(i),
                None => Device::libtorch(),
            });
            Err(not_built(spec, "tch"))
        }
    }
}

#[cfg(any(feature = "vulkan", feature = "wgpu"))]
fn kind(a: Adapter) -> burn::tensor::DeviceKind {
    use burn::tensor::DeviceKind;
    match a {
        Adapter::Default => DeviceKind::DefaultDevice,
        Adapter::Gpu(i) => DeviceKind::DiscreteGpu(i),
        Adapter::Cpu => DeviceKind::Cpu,
    }
}

/// A wgpu device exists only once an adapter of its kind is found; burn would panic at the
/// first tensor otherwise, so look first.
#[cfg(any(feature = "vulkan", feature = "wgpu"))]
fn wgpu_checked(spec: DeviceSpec, device: Device) -> Result<Device, DeviceError> {
    use std::panic::{catch_unwind, AssertUnwindSafe};
    // opening an adapter that is not there panics inside cubecl; turn it into an error
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let probe = catch_unwind(AssertUnwindSafe(|| device.identity()));
    std::panic::set_hook(prev);
    match probe {
        Ok(_) => Ok(device),
        Err(e) => {
            let detail = e.downcast_ref::<String>().map(String::as_str).or_else(|| e.downcast_ref::<&str>().copied()).unwrap_or("");
            let adapter = match spec {
                DeviceSpec::Vulkan(a) | DeviceSpec::Wgpu(a) => a,
                _ => Adapter::Default,
            };
            let what = match adapter {
                Adapter::Default => "no adapter".to_string(),
                Adapter::Gpu(i) => format!("no discrete GPU number {i}"),
                Adapter::Cpu => "no CPU adapter (Mesa's lavapipe: package mesa-vulkan-drivers)".to_string(),
            };
            let mut reason = format!("the GPU driver reports {what}; `vulkaninfo --summary` lists what it sees");
            let first = detail.lines().next().unwrap_or_default();
            if !first.is_empty() && !first.contains("unwrap()") {
                reason.push_str(&format!(": {first}"));
            }
            Err(DeviceError::NotFound { spec, reason })
        }
    }
}

/// The first GPU of an enabled GPU backend (a card, not a software adapter), else the CPU.
#[allow(unreachable_code)]
fn auto() -> DeviceSpec {
    #[cfg(feature = "cuda")]
    if !Device::enumerate(burn::tensor::DeviceType::Cuda).is_empty() {
        return DeviceSpec::Cuda(0);
    }
    #[cfg(feature = "vulkan")]
    if has_card(burn::tensor::DeviceType::Vulkan) {
        return DeviceSpec::Vulkan(Adapter::Default);
    }
    #[cfg(feature = "wgpu")]
    if has_card(burn::tensor::DeviceType::Wgpu) {
        return DeviceSpec::Wgpu(Adapter::Default);
    }
    #[cfg(feature = "tch")]
    if !cfg!(feature = "flex") {
        return DeviceSpec::Tch(Some(0));
    }
    #[cfg(feature = "flex")]
    return DeviceSpec::Cpu;
    #[cfg(feature = "vulkan")]
    return DeviceSpec::Vulkan(Adapter::Default);
    #[cfg(feature = "wgpu")]
    return DeviceSpec::Wgpu(Adapter::Default);
    DeviceSpec::Cpu
}

#[cfg(any(feature = "vulkan", feature = "wgpu"))]
fn has_card(ty: burn::tensor::DeviceType) -> bool {
    use std::panic::{catch_unwind, AssertUnwindSafe};
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let found =
        catch_unwind(AssertUnwindSafe(|| Device::enumerate(ty).into_iter().any(|d| d.identity().is_some_and(|i| i.physical.is_some()))))
            .unwrap_or(false);
    std::panic::set_hook(prev);
    found
}

#[allow(unused_variables)]
fn describe(spec: DeviceSpec, device: &Device) -> String {
    match spec {
        DeviceSpec::Cpu | DeviceSpec::Tch(None) | DeviceSpec::Auto => {
            let c = crate::util::cpu::cpu_info();
            let model = if c.model.is_empty() { "CPU".to_string() } else { c.model };
            format!("{model}, {} threads", rayon::current_num_threads())
        }
        _ => {
            #[cfg(any(feature = "vulkan", feature = "wgpu", feature = "cuda"))]
            if let Some(id) = device.identity() {
                return id.name;
            }
            "GPU".to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for s in ["auto", "cpu", "vulkan", "vulkan:1", "vulkan:cpu", "wgpu", "wgpu:0", "wgpu:cpu", "cuda:0", "cuda:3", "tch:0", "tch:cpu"] {
            let spec: DeviceSpec = s.parse().unwrap();
            assert_eq!(spec.to_string(), s);
        }
        assert_eq!("CUDA".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cuda(0));
        assert_eq!("tch".parse::<DeviceSpec>().unwrap(), DeviceSpec::Tch(Some(0)));
        assert_eq!("flex".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cpu);
        for bad in ["gpu", "cuda:x", "vulkan:-1", "cpu:1", "auto:0", "tch:gpu"] {
            let e = bad.parse::<DeviceSpec>().unwrap_err().to_string();
            assert!(e.contains(bad) && e.contains("expected"), "{bad}: {e}");
        }
    }

    #[test]
    fn cpu_opens_and_auto_resolves() {
        let d = DeviceSpec::Cpu.open().unwrap();
        assert!(d.is_cpu() && d.description.starts_with("cpu ("), "{}", d.description);
        let a = DeviceSpec::Auto.open().unwrap();
        assert_ne!(a.spec, DeviceSpec::Auto);
        assert!(built_backends().contains(&"cpu"));
    }

    #[test]
    fn unbuilt_backend_is_an_error_naming_the_feature() {
        if !cfg!(feature = "cuda") {
            let e = DeviceSpec::Cuda(0).open().unwrap_err().to_string();
            assert!(e.contains("`cuda` feature") && e.contains("--features cuda"), "{e}");
        }
        if !cfg!(feature = "tch") {
            let e = DeviceSpec::Tch(Some(0)).open().unwrap_err().to_string();
            assert!(e.contains("`tch` feature"), "{e}");
        }
    }
}
