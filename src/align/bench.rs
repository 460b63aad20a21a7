//! `facenet bench align`: images/s and per-stage times of the alignment path on a fixed set
//! of photos, through the same functions `facenet align` uses.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Result;

use super::crop::{choose_face, crop_and_resize, margin_box};
use super::detector::{Mtcnn, StageTimes};
use super::output::encode_png_with_box;
use crate::data::image_io::load_rgb;

/// Timings of [`bench_align`] (sums over all images and repeats).
#[derive(Clone, Debug, Default)]
pub struct AlignBench {
    /// Images per pass and passes timed (after one warm-up pass).
    pub images: usize,
    pub repeats: usize,
    /// Faces found per pass.
    pub faces: usize,
    pub decode: Duration,
    pub stages: StageTimes,
    /// Crop, resize and PNG encoding of the chosen face.
    pub crop: Duration,
    pub total: Duration,
    /// Detection time (all stages) of each timed pass over the photos, for the median:
    /// the like-for-like figure to set beside a detector timed on decoded images.
    pub detect_passes: Vec<Duration>,
}

impl AlignBench {
    /// Images aligned per second (decode to encoded crop).
    pub fn images_per_s(&self) -> f64 {
        let s = self.total.as_secs_f64();
        if s > 0.0 {
            (self.images * self.repeats) as f64 / s
        } else {
            0.0
        }
    }

    /// Median over the passes of the detection seconds per image (decoded image in, faces
    /// out: what a peer's `detect(image)` call does).
    pub fn detect_median_s(&self) -> f64 {
        let per: Vec<f64> = self.detect_passes.iter().map(|d| d.as_secs_f64() / self.images.max(1) as f64).collect();
        crate::util::median(&per)
    }

    /// Mean seconds per image of a duration summed over the run.
    pub fn per_image(&self, d: Duration) -> f64 {
        d.as_secs_f64() / (self.images * self.repeats).max(1) as f64
    }
}

impl std::fmt::Display for AlignBench {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "align: {} images x {} passes, {} faces per pass", self.images, self.repeats, self.faces)?;
        writeln!(f, "  images/s            {:>9.2}", self.images_per_s())?;
        writeln!(f, "  s/image             {:>9.4}", self.per_image(self.total))?;
        writeln!(f, "  detect s/image      {:>9.4}  (median of passes)", self.detect_median_s())?;
        for (name, d) in [
            ("decode", self.decode),
            ("pyramid", self.stages.pyramid),
            ("pnet", self.stages.pnet),
            ("rnet", self.stages.rnet),
            ("onet", self.stages.onet),
            ("crop+png", self.crop),
        ] {
            writeln!(f, "    {name:<16}{:>9.4} s/image", self.per_image(d))?;
        }
        Ok(())
    }
}

/// Aligns each image (decode, detect, choose, crop 182 with margin 44, PNG-encode; nothing is
/// written) once to warm up, then `repeats` times timed, one image after the other.
pub fn bench_align(images: &[PathBuf], mtcnn: &Mtcnn, repeats: usize) -> Result<AlignBench> {
    let mut bench = AlignBench { images: images.len(), repeats: repeats.max(1), ..Default::default() };
    for pass in 0..=bench.repeats {
        let timed = pass > 0;
        let mut faces = 0;
        let mut detect = Duration::ZERO;
        for path in images {
            let t0 = Instant::now();
            let img = load_rgb(path)?;
            let t1 = Instant::now();
            let mut st = StageTimes::default();
            let found = mtcnn.detect_timed(&img, &mut st);
            let t2 = Instant::now();
            let boxes: Vec<_> = found.iter().map(|f| f.bbox).collect();
            if let Some(i) = choose_face(&boxes, img.width(), img.height()) {
                if let Some(bb) = margin_box(boxes[i], 44.0, img.width(), img.height()) {
                    let crop = crop_and_resize(&img, bb, 182);
                    std::hint::black_box(encode_png_with_box(&crop, bb)?);
                }
            }
            let t3 = Instant::now();
            faces += found.len();
            detect += t2 - t1;
            if timed {
                bench.decode += t1 - t0;
                bench.stages.add(&st);
                bench.crop += t3 - t2;
                bench.total += t3 - t0;
            }
        }
        bench.faces = faces;
        if timed {
            bench.detect_passes.push(detect);
        }
    }
    Ok(bench)
}
