//! Face alignment with MTCNN, as the reference's `src/align/` does it.
//!
//! - [`nets`]: P-Net, R-Net, O-Net as burn modules;
//! - [`weights`]: fetching the published weights into `$FACENET_HOME` and loading them;
//! - [`pyramid`]: pyramid scales and level sizes (the resampling, OpenCV-exact `INTER_AREA`,
//!   is [`crate::data::resample`]);
//! - [`boxes`]: candidate boxes, NMS, regression, squaring (pure functions);
//! - [`numpy_sort`]: `np.argsort`'s tie order, which decides NMS ties as in the reference;
//! - [`detector`]: the three-stage cascade ([`Mtcnn::detect`]);
//! - [`crop`]: face choice, margin, bilinear crop resize;
//! - [`output`]: PNG crops that remember their box, the bounding-box list, temp cleanup;
//! - [`job`]: `facenet align` over a dataset (parallel, sharded, resumable);
//! - [`bench`]: `facenet bench align`.

pub mod bench;
pub mod boxes;
pub mod crop;
pub mod detector;
pub mod job;
pub mod nets;
pub mod numpy_sort;
pub mod output;
pub mod pyramid;
pub mod weights;

pub use bench::{bench_align, AlignBench};
pub use detector::{DetectorConfig, Face, Mtcnn, StageTimes};
pub use job::{align_dataset, AlignOptions, AlignSummary, Shard};

/// Loads the detector on `device`, fetching the weights first if needed.
pub fn load_detector(config: DetectorConfig, device: &burn::tensor::Device) -> Result<Mtcnn, weights::WeightsError> {
    let dir = weights::ensure_weights()?;
    Ok(Mtcnn::new(weights::load_nets(&dir, device)?, config))
}
