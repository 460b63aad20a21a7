//! Small shared helpers: atomic file output and progress bars.

pub mod atomic;
pub mod progress;
pub mod wheel;
