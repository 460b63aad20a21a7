//! Verification: LFW-protocol metrics and the raw-pixel baseline.

pub mod baseline;
pub mod metrics;
