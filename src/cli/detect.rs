//! `facenet detect IMAGE...`: MTCNN boxes, probabilities and landmarks, as a table or as one
//! JSON object per image per line (`--json`).

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;
use serde::Serialize;

use crate::align::{load_detector, DetectorConfig, Face};
use crate::data::image_io::load_rgb;
use crate::util::device::DeviceArg;
use crate::util::precision::{set_precision, Precision};

/// The detector's parameters (shared by `detect` and `align`).
#[derive(Args, Debug, Clone)]
pub struct DetectorArgs {
    /// Smallest face to detect, in pixels
    #[arg(long, default_value_t = 20.0)]
    pub min_face_size: f64,
    /// Score thresholds of P-Net, R-Net and O-Net, comma separated
    #[arg(long, value_delimiter = ',', default_values_t = [0.6, 0.7, 0.7])]
    pub thresholds: Vec<f64>,
    /// Scale step of the image pyramid
    #[arg(long, default_value_t = 0.709)]
    pub factor: f64,
}

impl DetectorArgs {
    pub fn config(&self) -> Result<DetectorConfig> {
        let [a, b, c] = self.thresholds[..] else {
            bail!("--thresholds needs three values (P-Net,R-Net,O-Net), got {}", self.thresholds.len())
        };
        if !(self.min_face_size >= 1.0) {
            bail!("--min_face_size must be at least 1, got {}", self.min_face_size);
        }
        if !(self.factor > 0.0 && self.factor < 1.0) {
            bail!("--factor must be between 0 and 1 (exclusive), got {}", self.factor);
        }
        if let Some(t) = [a, b, c].into_iter().find(|t| !(0.0..=1.0).contains(t)) {
            bail!("--thresholds are probabilities, in [0, 1]; got {t}");
        }
        Ok(DetectorConfig { min_face_size: self.min_face_size, thresholds: [a, b, c], factor: self.factor, ..Default::default() })
    }
}

#[derive(Args, Debug)]
pub struct DetectArgs {
    /// Photos to search for faces
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    /// One JSON object per image per line instead of a table
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub detector: DetectorArgs,
    #[command(flatten)]
    pub device: DeviceArg,
}

fn round(v: f64, digits: i32) -> f64 {
    let k = 10f64.powi(digits);
    (v * k).round() / k
}

#[derive(Serialize)]
struct FaceJson {
    #[serde(rename = "box")]
    bbox: [f64; 4],
    prob: f64,
    landmarks: [[f64; 2]; 5],
}

#[derive(Serialize)]
struct ImageJson<'a> {
    image: &'a str,
    faces: Vec<FaceJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// The JSON line of one image: `{"image": PATH, "faces": [{"box", "prob", "landmarks"}]}`.
pub fn faces_json(image: &str, faces: &[Face]) -> String {
    let faces = faces
        .iter()
        .map(|f| FaceJson {
            bbox: f.bbox.map(|v| round(v, 3)),
            prob: round(f.prob, 6),
            landmarks: f.landmarks.map(|p| p.map(|v| round(v, 3))),
        })
        .collect();
    serde_json::to_string(&ImageJson { image, faces, error: None }).unwrap_or_default()
}

pub fn run(a: DetectArgs) -> Result<()> {
    let chosen = a.device.open()?;
    set_precision(Precision::F32, &chosen)?;
    let mtcnn = load_detector(a.detector.config()?, &chosen.device)?;
    let mut failed = 0;
    for path in &a.images {
        let shown = path.display().to_string();
        let img = match load_rgb(path) {
            Ok(img) => img,
            Err(e) => {
                failed += 1;
                eprintln!("error: {e}");
                if a.json {
                    let line = ImageJson { image: &shown, faces: Vec::new(), error: Some(e.reason.clone()) };
                    println!("{}", serde_json::to_string(&line).unwrap_or_default());
                }
                continue;
            }
        };
        let faces = mtcnn.detect(&img);
        if a.json {
            println!("{}", faces_json(&shown, &faces));
            continue;
        }
        println!("{shown} ({} x {}): {} face{}", img.width(), img.height(), faces.len(), if faces.len() == 1 { "" } else { "s" });
        if !faces.is_empty() {
            println!(
                "  {:>2}  {:>6}  {:>7} {:>7} {:>7} {:>7}   landmarks (x,y): eyes, nose, mouth corners",
                "#", "prob", "x1", "y1", "x2", "y2"
            );
        }
        for (i, f) in faces.iter().enumerate() {
            let marks: Vec<String> = f.landmarks.iter().map(|[x, y]| format!("({x:.0},{y:.0})")).collect();
            println!(
                "  {i:>2}  {:>6.4}  {:>7.1} {:>7.1} {:>7.1} {:>7.1}   {}",
                f.prob,
                f.bbox[0],
                f.bbox[1],
                f.bbox[2],
                f.bbox[3],
                marks.join(" ")
            );
        }
    }
    if failed > 0 {
        bail!("{failed} of {} image(s) could not be read", a.images.len());
    }
    Ok(())
}
