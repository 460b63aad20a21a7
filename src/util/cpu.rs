//! What CPU a measurement ran on: its model name and the vector instruction sets this binary
//! uses there, so that every speed figure says where it was measured.

/// The CPU and the instruction sets used on it.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct CpuInfo {
    /// `model name` of `/proc/cpuinfo` (empty where unknown).
    pub model: String,
    /// Vector extensions the CPU has, of those that matter here: `avx2`, `fma`, `avx512f`,
    /// `avx512bw`, `avx512vl`, `avx512bf16`.
    pub isa: Vec<&'static str>,
    /// The kernels the GEMM crate dispatches to on this CPU: `avx512f` (our default build on an
    /// AVX-512 CPU), `avx2+fma` (its V3 kernels, chosen on FMA), or `baseline`.
    pub gemm_kernels: &'static str,
    /// Logical CPUs this process may use.
    pub cpus: usize,
}

/// Looks at the running machine.
pub fn cpu_info() -> CpuInfo {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("model name")).and_then(|l| l.split(':').nth(1)).map(|m| m.trim().to_string()))
        .unwrap_or_default();
    let isa = x86_features();
    let has = |f: &str| isa.contains(&f);
    // the GEMM crate's own rule: AVX-512F kernels when compiled in (our `flex` feature turns
    // them on) and the CPU has it, else AVX2 + FMA, else its baseline kernels
    let gemm_kernels = if cfg!(feature = "flex") && has("avx512f") {
        "avx512f"
    } else if has("fma") {
        "avx2+fma"
    } else {
        "baseline"
    };
    CpuInfo { model, isa, gemm_kernels, cpus: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) }
}

#[cfg(target_arch = "x86_64")]
fn x86_features() -> Vec<&'static str> {
    let mut v = Vec::new();
    macro_rules! probe {
        ($($f:tt),*) => { $( if std::is_x86_feature_detected!($f) { v.push($f); } )* };
    }
    probe!("avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512bf16");
    v
}

#[cfg(not(target_arch = "x86_64"))]
fn x86_features() -> Vec<&'static str> {
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_this_machine() {
        let c = cpu_info();
        assert!(c.cpus >= 1);
        // AVX-512 implies AVX2 on every x86 CPU made; the GEMM rule follows the flags
        if c.isa.contains(&"avx512f") {
            assert!(c.isa.contains(&"avx2"));
            assert_eq!(c.gemm_kernels, if cfg!(feature = "flex") { "avx512f" } else { "avx2+fma" });
        }
        if !c.isa.contains(&"fma") {
            assert_eq!(c.gemm_kernels, "baseline");
        }
        let json = serde_json::to_value(&c).unwrap();
        assert!(json["isa"].is_array() && json["model"].is_string());
    }
}
