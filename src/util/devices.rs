//! `--devices LIST`: the devices of a data-parallel training run, one model replica each
//! (`cpu:0,cpu:1`, `cuda:0,cuda:1,...`).
//!
//! Every entry is a [`DeviceSpec`] as `--device` writes it, plus `cpu:K`: burn's CPU backend
//! has a single device (flex's device is a unit value), so `cpu:0,cpu:1` are two replicas that
//! take turns on it. That is what the CPU tests use to check that N replicas train like one
//! device; it does not make training faster on a CPU (all cores already serve one replica).
//!
//! Rules checked here: at least one entry, at most [`MAX_DEVICES`], no entry twice, every
//! entry of the same backend, no `auto` (a replica's device must be named).

use std::fmt;
use std::str::FromStr;

use super::device::DeviceSpec;

/// Most replicas a run may have (a typo such as `cuda:0,...` repeated is refused early).
pub const MAX_DEVICES: usize = 64;

/// One entry of `--devices`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplicaDevice {
    /// The device the replica runs on.
    pub spec: DeviceSpec,
    /// For CPU entries, K of `cpu:K` (a replica number; every CPU replica shares the one CPU
    /// device).
    pub cpu_index: Option<usize>,
}

impl fmt::Display for ReplicaDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.cpu_index {
            Some(k) => write!(f, "cpu:{k}"),
            None => write!(f, "{}", self.spec),
        }
    }
}

/// A parsed `--devices` value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceList(Vec<ReplicaDevice>);

#[derive(Debug, thiserror::Error)]
pub enum DevicesError {
    #[error("--devices '{list}': entry '{entry}': {reason}")]
    Entry { list: String, entry: String, reason: String },
    #[error("--devices '{0}': empty (expected e.g. cpu:0,cpu:1 or cuda:0,cuda:1)")]
    Empty(String),
    #[error("--devices '{list}': {count} devices, at most {MAX_DEVICES}")]
    TooMany { list: String, count: usize },
    #[error("--devices '{list}': {entry} is named twice")]
    Twice { list: String, entry: String },
    #[error("--devices '{list}': {a} and {b} are on different backends (one backend per run)")]
    Mixed { list: String, a: String, b: String },
}

/// The backend name of a spec, for the one-backend rule.
fn backend(spec: DeviceSpec) -> &'static str {
    match spec {
        DeviceSpec::Auto => "auto",
        DeviceSpec::Cpu => "cpu",
        DeviceSpec::Vulkan(_) => "vulkan",
        DeviceSpec::Wgpu(_) => "wgpu",
        DeviceSpec::Cuda(_) => "cuda",
        DeviceSpec::Tch(_) => "tch",
    }
}

impl FromStr for DeviceList {
    type Err = DevicesError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let list = s.to_string();
        let entries: Vec<&str> = s.split(',').map(str::trim).filter(|e| !e.is_empty()).collect();
        if entries.is_empty() {
            return Err(DevicesError::Empty(list));
        }
        if entries.len() > MAX_DEVICES {
            return Err(DevicesError::TooMany { list, count: entries.len() });
        }
        let mut out: Vec<ReplicaDevice> = Vec::with_capacity(entries.len());
        for e in entries {
            let entry_err = |reason: String| DevicesError::Entry { list: list.clone(), entry: e.to_string(), reason };
            let lower = e.to_ascii_lowercase();
            let d = match lower.split_once(':') {
                Some(("cpu" | "flex", k)) => match k.parse::<usize>() {
                    Ok(k) if k < MAX_DEVICES => ReplicaDevice { spec: DeviceSpec::Cpu, cpu_index: Some(k) },
                    _ => return Err(entry_err(format!("expected cpu:K with K below {MAX_DEVICES}"))),
                },
                _ => match e.parse::<DeviceSpec>() {
                    Ok(DeviceSpec::Auto) => return Err(entry_err("auto cannot name a replica's device".into())),
                    Ok(DeviceSpec::Cpu) => ReplicaDevice { spec: DeviceSpec::Cpu, cpu_index: Some(0) },
                    Ok(spec) => ReplicaDevice { spec, cpu_index: None },
                    Err(err) => return Err(entry_err(err.to_string())),
                },
            };
            if let Some(first) = out.first() {
                if backend(first.spec) != backend(d.spec) {
                    return Err(DevicesError::Mixed { list, a: first.to_string(), b: d.to_string() });
                }
            }
            if out.contains(&d) {
                return Err(DevicesError::Twice { list, entry: d.to_string() });
            }
            out.push(d);
        }
        Ok(DeviceList(out))
    }
}

impl fmt::Display for DeviceList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl serde::Serialize for DeviceList {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for DeviceList {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl DeviceList {
    /// The entries, in order (replica 0 first).
    pub fn entries(&self) -> &[ReplicaDevice] {
        &self.0
    }

    /// How many replicas (at least 1).
    pub fn replicas(&self) -> usize {
        self.0.len()
    }

    /// The distinct devices the replicas run on (CPU replicas share one).
    pub fn distinct_devices(&self) -> Vec<DeviceSpec> {
        let mut v: Vec<DeviceSpec> = Vec::new();
        for d in &self.0 {
            if !v.contains(&d.spec) {
                v.push(d.spec);
            }
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_replicas_and_gpu_lists_parse_and_print_back() {
        let l: DeviceList = "cpu:0, cpu:1".parse().unwrap();
        assert_eq!(l.replicas(), 2);
        assert_eq!(l.to_string(), "cpu:0,cpu:1");
        assert_eq!(l.distinct_devices(), vec![DeviceSpec::Cpu]);
        let l: DeviceList = "cuda:0,cuda:1,cuda:3".parse().unwrap();
        assert_eq!(l.replicas(), 3);
        assert_eq!(l.distinct_devices(), vec![DeviceSpec::Cuda(0), DeviceSpec::Cuda(1), DeviceSpec::Cuda(3)]);
        assert_eq!(l.to_string(), "cuda:0,cuda:1,cuda:3");
        let l: DeviceList = "cpu".parse().unwrap();
        assert_eq!(l.to_string(), "cpu:0");
        let json = serde_json::to_string(&l).unwrap();
        assert_eq!(serde_json::from_str::<DeviceList>(&json).unwrap(), l);
    }

    #[test]
    fn bad_lists_are_errors_that_name_the_entry() {
        for (list, want) in [
            ("", "empty"),
            (" , ", "empty"),
            ("cpu:0,cpu:0", "cpu:0 is named twice"),
            ("cpu,cpu:0", "cpu:0 is named twice"),
            ("cpu:0,cuda:0", "different backends"),
            ("auto", "auto cannot"),
            ("cpu:x", "entry 'cpu:x'"),
            ("cpu:99", "below 64"),
            ("tpu:0", "entry 'tpu:0'"),
        ] {
            let e = list.parse::<DeviceList>().unwrap_err().to_string();
            assert!(e.contains(want), "{list}: {e}");
        }
        let many = (0..65).map(|i| format!("cuda:{i}")).collect::<Vec<_>>().join(",");
        assert!(many.parse::<DeviceList>().unwrap_err().to_string().contains("at most 64"));
    }
}
