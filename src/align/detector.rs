//! The MTCNN cascade (the reference's `detect_face`): pyramid + P-Net, NMS, R-Net on 24x24
//! crops, O-Net on 48x48 crops with landmarks, final NMS.
//!
//! The nets run on burn; everything between them is the plain-array code of
//! [`super::boxes`], [`super::pyramid`] and [`crate::data::resample`], in the reference's order and precision.

use std::time::{Duration, Instant};

use burn::tensor::{Device, Tensor, TensorData};
use image::RgbImage;
use rayon::prelude::*;

use super::boxes::{self, Candidate, Overlap, Rect};
use super::nets::Nets;
use super::pyramid;
use crate::data::resample;

/// Detection parameters (the reference's hard-coded `minsize`, `threshold`, `factor`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DetectorConfig {
    /// Smallest face side in pixels (20).
    pub min_face_size: f64,
    /// Score thresholds of P-Net, R-Net, O-Net (0.6, 0.7, 0.7).
    pub thresholds: [f64; 3],
    /// Pyramid scale step (0.709).
    pub factor: f64,
    /// Images with more pixels than this are detected on an area-downscaled copy (with the
    /// minimum face size scaled alike, but not below 12 pixels in the copy, so the pyramid
    /// never enlarges it again) and the results scaled back; keeps memory bounded. Pyramid
    /// levels larger than this (a minimum face size under 12 pixels enlarges) are skipped.
    pub max_detect_pixels: usize,
}

impl DetectorConfig {
    /// The size `(w', h')` a `w x h` image is detected at: itself, or the downscaled copy
    /// (same aspect ratio, about `max_detect_pixels` pixels) when it has more pixels.
    pub fn detect_size(&self, w: usize, h: usize) -> (usize, usize) {
        if w * h <= self.max_detect_pixels {
            return (w, h);
        }
        let k = (self.max_detect_pixels as f64 / (w as f64 * h as f64)).sqrt();
        let side = |n: usize| ((n as f64 * k).round() as usize).clamp(1, n);
        (side(w), side(h))
    }
}

impl Default for DetectorConfig {
    fn default() -> Self {
        DetectorConfig { min_face_size: 20.0, thresholds: [0.6, 0.7, 0.7], factor: 0.709, max_detect_pixels: 4096 * 4096 }
    }
}

/// One detected face, in pixel coordinates of the image given to [`Mtcnn::detect`].
#[derive(Clone, Debug, PartialEq)]
pub struct Face {
    /// `[x1, y1, x2, y2]` after the last regression (not squared, not truncated).
    pub bbox: Rect,
    /// O-Net's face probability.
    pub prob: f64,
    /// Eyes, nose, mouth corners: `[[x, y]; 5]`.
    pub landmarks: [[f64; 2]; 5],
}

/// Time spent in each stage (summed over calls).
#[derive(Clone, Copy, Debug, Default)]
pub struct StageTimes {
    /// Pyramid resampling.
    pub pyramid: Duration,
    /// P-Net on every level, candidate generation, NMS.
    pub pnet: Duration,
    /// 24x24 crops and R-Net.
    pub rnet: Duration,
    /// 48x48 crops and O-Net.
    pub onet: Duration,
}

impl StageTimes {
    pub fn total(&self) -> Duration {
        self.pyramid + self.pnet + self.rnet + self.onet
    }

    pub fn add(&mut self, o: &StageTimes) {
        self.pyramid += o.pyramid;
        self.pnet += o.pnet;
        self.rnet += o.rnet;
        self.onet += o.onet;
    }
}

/// P-Net levels larger than this many output cells per side are run in tiles (exact: the
/// net is convolutional and tiles start on even input rows/columns).
const PNET_TILE: usize = 384;
/// R-Net / O-Net batches are at most this many crops.
const MAX_BATCH: usize = 128;

/// The detector: the three nets and the parameters.
pub struct Mtcnn {
    pub nets: Nets,
    pub config: DetectorConfig,
}

fn to_vec(t: Tensor<2>) -> Vec<f32> {
    t.into_data().try_into_vec_as::<f32>().unwrap_or_default()
}

fn to_vec4(t: Tensor<4>) -> Vec<f32> {
    t.into_data().try_into_vec_as::<f32>().unwrap_or_default()
}

/// `(v - 127.5) * 0.0078125`, the reference's normalisation.
#[inline]
fn norm(v: f64) -> f32 {
    ((v - 127.5) * 0.0078125) as f32
}

impl Mtcnn {
    pub fn new(nets: Nets, config: DetectorConfig) -> Self {
        Mtcnn { nets, config }
    }

    fn device(&self) -> &Device {
        &self.nets.device
    }

    /// Detects faces; see [`Mtcnn::detect_timed`].
    pub fn detect(&self, img: &RgbImage) -> Vec<Face> {
        self.detect_timed(img, &mut StageTimes::default())
    }

    /// Detects faces, best first (the order of the final NMS), adding stage times to `times`.
    pub fn detect_timed(&self, img: &RgbImage, times: &mut StageTimes) -> Vec<Face> {
        let (w, h) = (img.width() as usize, img.height() as usize);
        if w == 0 || h == 0 {
            return Vec::new();
        }
        let (dw, dh) = self.config.detect_size(w, h);
        if (dw, dh) != (w, h) {
            let t = Instant::now();
            let small = resample::resize_area_u8(img.as_raw(), w, h, 3, dw, dh);
            times.pyramid += t.elapsed();
            return self.detect_scaled(&small, dw, dh, (w as f64 / dw as f64, h as f64 / dh as f64), times);
        }
        self.detect_raw(img.as_raw(), w, h, &self.config, times)
    }

    /// Detects faces on `small` (`dw x dh`, interleaved RGB), a copy of an image shrunk by
    /// `(sx, sy)` = original size / copy size; faces come back in original pixel coordinates.
    /// The minimum face size shrinks alike, but not below 12 pixels (P-Net's window; or the
    /// configured size if smaller): the pyramid never enlarges the copy, so memory stays
    /// bounded, and faces smaller than about `12 * sx` original pixels are not searched for.
    pub fn detect_scaled(&self, small: &[u8], dw: usize, dh: usize, (sx, sy): (f64, f64), times: &mut StageTimes) -> Vec<Face> {
        let mut config = self.config;
        let floor = config.min_face_size.min(12.0);
        config.min_face_size = (config.min_face_size / sx.max(sy)).max(floor).max(1.0);
        self.detect_raw(small, dw, dh, &config, times)
            .into_iter()
            .map(|f| Face {
                bbox: [f.bbox[0] * sx, f.bbox[1] * sy, f.bbox[2] * sx, f.bbox[3] * sy],
                prob: f.prob,
                landmarks: f.landmarks.map(|[x, y]| [x * sx, y * sy]),
            })
            .collect()
    }

    /// The cascade on an interleaved RGB buffer.
    pub fn detect_raw(&self, img: &[u8], w: usize, h: usize, cfg: &DetectorConfig, times: &mut StageTimes) -> Vec<Face> {
        let [t1, t2, t3] = cfg.thresholds;
        // stage 1: P-Net over the pyramid
        let mut all: Vec<Candidate> = Vec::new();
        let t = Instant::now();
        let scales = pyramid::scales_within(h, w, cfg.min_face_size, cfg.factor, cfg.max_detect_pixels);
        let levels: Vec<(f64, usize, usize, Vec<u8>)> = scales
            .par_iter()
            .map(|&scale| {
                let (hs, ws) = pyramid::level_size(h, w, scale);
                (scale, hs, ws, resample::resize_area_u8(img, w, h, 3, ws, hs))
            })
            .collect();
        times.pyramid += t.elapsed();
        // levels side by side (the small ones do not keep the cores busy), kept in scale order
        let t = Instant::now();
        let per_level: Vec<Vec<Candidate>> = levels
            .par_iter()
            .map(|(scale, hs, ws, level)| {
                let (prob, reg, oh, ow) = self.run_pnet(level, *ws, *hs);
                let cands = boxes::generate_candidates(&prob, &reg, oh, ow, *scale, t1);
                let rects: Vec<Rect> = cands.iter().map(|c| c.rect).collect();
                let scores: Vec<f64> = cands.iter().map(|c| c.score).collect();
                boxes::nms(&rects, &scores, 0.5, Overlap::Union).into_iter().map(|i| cands[i]).collect()
            })
            .collect();
        all.extend(per_level.into_iter().flatten());
        times.pnet += t.elapsed();
        if all.is_empty() {
            return Vec::new();
        }
        let t = Instant::now();
        let rects: Vec<Rect> = all.iter().map(|c| c.rect).collect();
        let scores: Vec<f64> = all.iter().map(|c| c.score).collect();
        let stage1: Vec<Rect> = boxes::nms(&rects, &scores, 0.7, Overlap::Union)
            .into_iter()
            .map(|i| boxes::fix(boxes::square(boxes::calibrate_pnet(all[i].rect, all[i].reg))))
            .filter(|r| boxes::window(*r).is_some())
            .collect();
        times.pnet += t.elapsed();

        // stage 2: R-Net on 24x24 crops
        let t = Instant::now();
        let mut prob = Vec::with_capacity(stage1.len());
        let mut reg = Vec::with_capacity(stage1.len() * 4);
        // batches run side by side: small convolutions do not keep all cores busy
        let outs: Vec<(Vec<f32>, Vec<f32>)> = stage1
            .par_chunks(MAX_BATCH)
            .map(|chunk| {
                let out = self.nets.rnet.forward(self.crops(img, w, h, chunk, 24));
                (to_vec(out.prob), to_vec(out.reg))
            })
            .collect();
        for (p, r) in outs {
            prob.extend(p);
            reg.extend(r);
        }
        let passed: Vec<usize> = (0..stage1.len()).filter(|&i| prob[i] as f64 > t2).collect();
        let rects: Vec<Rect> = passed.iter().map(|&i| stage1[i]).collect();
        let scores: Vec<f64> = passed.iter().map(|&i| prob[i] as f64).collect();
        let stage2: Vec<Rect> = boxes::nms(&rects, &scores, 0.7, Overlap::Union)
            .into_iter()
            .map(|k| {
                let i = passed[k];
                let r = [reg[4 * i], reg[4 * i + 1], reg[4 * i + 2], reg[4 * i + 3]].map(|v| v as f64);
                boxes::fix(boxes::square(boxes::bbreg(stage1[i], r)))
            })
            .filter(|r| boxes::window(*r).is_some())
            .collect();
        times.rnet += t.elapsed();
        if stage2.is_empty() {
            return Vec::new();
        }

        // stage 3: O-Net on 48x48 crops
        let t = Instant::now();
        let mut prob = Vec::with_capacity(stage2.len());
        let mut reg = Vec::with_capacity(stage2.len() * 4);
        let mut points = Vec::with_capacity(stage2.len() * 10);
        let outs: Vec<(Vec<f32>, Vec<f32>, Vec<f32>)> = stage2
            .par_chunks(MAX_BATCH / 8)
            .map(|chunk| {
                let out = self.nets.onet.forward(self.crops(img, w, h, chunk, 48));
                (to_vec(out.prob), to_vec(out.reg), to_vec(out.points))
            })
            .collect();
        for (p, r, l) in outs {
            prob.extend(p);
            reg.extend(r);
            points.extend(l);
        }
        let mut faces = Vec::new();
        for i in 0..stage2.len() {
            if prob[i] as f64 <= t3 {
                continue;
            }
            let p: [f64; 10] = std::array::from_fn(|k| points[10 * i + k] as f64);
            let r = [reg[4 * i], reg[4 * i + 1], reg[4 * i + 2], reg[4 * i + 3]].map(|v| v as f64);
            faces.push(Face { bbox: boxes::bbreg(stage2[i], r), prob: prob[i] as f64, landmarks: boxes::landmarks(stage2[i], &p) });
        }
        let rects: Vec<Rect> = faces.iter().map(|f| f.bbox).collect();
        let scores: Vec<f64> = faces.iter().map(|f| f.prob).collect();
        let pick = boxes::nms(&rects, &scores, 0.7, Overlap::Min);
        let out = pick.into_iter().map(|i| faces[i].clone()).collect();
        times.onet += t.elapsed();
        out
    }

    /// Runs P-Net on one level (`u8`, interleaved), tiling big levels; returns the face
    /// probability map, the 4 regression maps and the map size `(h', w')`.
    fn run_pnet(&self, level: &[u8], ws: usize, hs: usize) -> (Vec<f32>, Vec<f32>, usize, usize) {
        // output size: conv3 -> ceil-pool2 -> conv3 -> conv3
        let out = |n: usize| (n - 2).div_ceil(2) - 4;
        let (oh, ow) = (out(hs), out(ws));
        let mut prob = vec![0f32; oh * ow];
        let mut reg = vec![0f32; 4 * oh * ow];
        for r0 in (0..oh).step_by(PNET_TILE) {
            let r1 = (r0 + PNET_TILE).min(oh);
            for c0 in (0..ow).step_by(PNET_TILE) {
                let c1 = (c0 + PNET_TILE).min(ow);
                // input window: rows 2*r0 .. 2*(r1-1)+12, clipped to the level
                let (y0, y1) = (2 * r0, (2 * r1 + 10).min(hs));
                let (x0, x1) = (2 * c0, (2 * c1 + 10).min(ws));
                let (th, tw) = (y1 - y0, x1 - x0);
                let mut data = vec![0f32; 3 * th * tw];
                for y in 0..th {
                    let row = &level[((y0 + y) * ws + x0) * 3..((y0 + y) * ws + x1) * 3];
                    for x in 0..tw {
                        for c in 0..3 {
                            data[(c * th + y) * tw + x] = norm(row[x * 3 + c] as f64);
                        }
                    }
                }
                let t = Tensor::<4>::from_data(TensorData::new(data, [1, 3, th, tw]), self.device());
                let o = self.nets.pnet.forward(t);
                let (p, g) = (to_vec4(o.prob), to_vec4(o.reg));
                let (toh, tow) = (out(th), out(tw));
                debug_assert_eq!(p.len(), toh * tow);
                for r in 0..(r1 - r0) {
                    for c in 0..(c1 - c0) {
                        prob[(r0 + r) * ow + c0 + c] = p[r * tow + c];
                        for k in 0..4 {
                            reg[(k * oh + r0 + r) * ow + c0 + c] = g[(k * toh + r) * tow + c];
                        }
                    }
                }
            }
        }
        (prob, reg, oh, ow)
    }

    /// Zero-padded crops of the (truncated) boxes, area-resized to `size x size` in float64
    /// and normalised: `[N, 3, size, size]`.
    fn crops(&self, img: &[u8], w: usize, h: usize, rects: &[Rect], size: usize) -> Tensor<4> {
        let n = rects.len();
        let mut data = vec![0f32; n * 3 * size * size];
        // one crop per task: crop sizes vary widely, so whole batches would not balance
        data.par_chunks_mut(3 * size * size).zip(rects).for_each(|(out, r)| {
            let Some(win) = boxes::window(*r) else { return };
            let (cw, ch) = (win.w as usize, win.h as usize);
            let small = resample::resize_window_area_f64(img, (w, h, 3), (win.x, win.y, cw, ch), size, size)
                .unwrap_or_else(|| resample::resize_area_f64(&crop_padded(img, w, h, win), cw, ch, 3, size, size));
            for y in 0..size {
                for x in 0..size {
                    for c in 0..3 {
                        out[(c * size + y) * size + x] = norm(small[(y * size + x) * 3 + c]);
                    }
                }
            }
        });
        Tensor::<4>::from_data(TensorData::new(data, [n, 3, size, size]), self.device())
    }
}

/// The window's pixels as float64 (`h x w x 3`), zeros where it leaves the image.
pub fn crop_padded(img: &[u8], w: usize, h: usize, win: boxes::Window) -> Vec<f64> {
    let (cw, ch) = (win.w as usize, win.h as usize);
    let mut out = vec![0f64; cw * ch * 3];
    let x_lo = win.x.max(0);
    let x_hi = (win.x + win.w).min(w as i64);
    let y_lo = win.y.max(0);
    let y_hi = (win.y + win.h).min(h as i64);
    if x_lo >= x_hi || y_lo >= y_hi {
        return out;
    }
    for y in y_lo..y_hi {
        let src = &img[(y as usize * w + x_lo as usize) * 3..(y as usize * w + x_hi as usize) * 3];
        let dst_start = ((y - win.y) as usize * cw + (x_lo - win.x) as usize) * 3;
        for (d, s) in out[dst_start..dst_start + src.len()].iter_mut().zip(src) {
            *d = *s as f64;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crop_pads_with_zeros() {
        // 3x2 image, pixel value = 10*y + x in every channel
        let img: Vec<u8> = (0..2).flat_map(|y| (0..3).flat_map(move |x| [10 * y + x; 3])).collect();
        let c = crop_padded(&img, 3, 2, boxes::Window { x: -1, y: 1, w: 3, h: 2 });
        let ch0: Vec<f64> = c.iter().step_by(3).copied().collect();
        assert_eq!(ch0, vec![0.0, 10.0, 11.0, 0.0, 0.0, 0.0]);
        let c = crop_padded(&img, 3, 2, boxes::Window { x: 5, y: 5, w: 2, h: 2 });
        assert!(c.iter().all(|v| *v == 0.0));
    }

    #[test]
    fn untrained_nets_run_end_to_end() {
        let d = Device::flex();
        let m = Mtcnn::new(Nets::untrained(&d), DetectorConfig { thresholds: [0.0, 0.0, 0.0], ..Default::default() });
        let img = RgbImage::from_fn(40, 30, |x, y| image::Rgb([(x * 5) as u8, (y * 7) as u8, 128]));
        let faces = m.detect(&img);
        for f in &faces {
            assert!(f.prob >= 0.0 && f.prob <= 1.0);
        }
        // smaller than a face: nothing, no panic
        assert!(m.detect(&RgbImage::new(5, 5)).is_empty());
    }

    #[test]
    fn tiled_pnet_equals_whole() {
        let d = Device::flex();
        let m = Mtcnn::new(Nets::untrained(&d), DetectorConfig::default());
        let (ws, hs) = (2 * PNET_TILE + 37, 41);
        let level: Vec<u8> = (0..ws * hs * 3).map(|i| (i * 7 % 251) as u8).collect();
        let (p, g, oh, ow) = m.run_pnet(&level, ws, hs);
        let mut data = vec![0f32; 3 * hs * ws];
        for y in 0..hs {
            for x in 0..ws {
                for c in 0..3 {
                    data[(c * hs + y) * ws + x] = norm(level[(y * ws + x) * 3 + c] as f64);
                }
            }
        }
        let o = m.nets.pnet.forward(Tensor::<4>::from_data(TensorData::new(data, [1, 3, hs, ws]), &d));
        assert_eq!(o.prob.dims(), [1, 1, oh, ow]);
        let (pw, gw) = (to_vec4(o.prob), to_vec4(o.reg));
        let close = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-5);
        assert!(close(&p, &pw) && close(&g, &gw));
    }
}
