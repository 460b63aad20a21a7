//! Verification: LFW-protocol metrics and the raw-pixel baseline.

pub mod baseline;
pub mod embed;
pub mod metrics;
pub mod verify;
