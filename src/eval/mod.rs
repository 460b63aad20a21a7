//! Verification: LFW-protocol metrics and the raw-pixel baseline.
//!
//! * [`metrics`]: the LFW protocol: distances, k-fold accuracy and ROC,
//!   VAL@FAR, AUC and EER;
//! * [`numpy_compat`]: the NumPy / SciPy routines the protocol is computed with
//!   (pairwise sum, mean, standard deviation, trapezoid rule, `interp1d` linear
//!   and slinear, `brentq`), reproduced bit for bit;
//! * [`embed`]: embedding images with a trained network;
//! * [`verify`]: verification of a model on a pairs file (embed, then the protocol);
//! * [`baseline`]: the raw-pixel baseline;
//! * [`summary`]: the reference's four result lines.

pub mod baseline;
pub mod embed;
pub mod metrics;
pub mod numpy_compat;
pub mod summary;
pub mod verify;
