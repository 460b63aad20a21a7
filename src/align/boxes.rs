//! Box arithmetic of the MTCNN cascade: candidate generation from the P-Net maps,
//! non-maximum suppression, regression, squaring and crop windows.
//!
//! Pure functions over plain numbers, in `f64` like the reference (which does this part in
//! NumPy float64). Coordinates follow the reference's convention, inherited from the MATLAB
//! original: a box `[x1, y1, x2, y2]` covers the 0-based pixel columns `x1 - 1 ..= x2 - 1`
//! once truncated to integers, and areas count `+1` pixel (`(x2 - x1 + 1) * (y2 - y1 + 1)`).

use super::numpy_sort::argsort_like_numpy;

/// A box `[x1, y1, x2, y2]`.
pub type Rect = [f64; 4];

/// A P-Net proposal: the box in image coordinates, its face probability, and the regression
/// offsets `[dx1, dy1, dx2, dy2]` predicted for it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Candidate {
    pub rect: Rect,
    pub score: f64,
    pub reg: [f64; 4],
}

/// How NMS measures the overlap of two boxes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overlap {
    /// Intersection over union.
    Union,
    /// Intersection over the smaller area.
    Min,
}

/// P-Net's stride (one output cell per 2 input pixels) and receptive field (12 pixels).
pub const PNET_STRIDE: f64 = 2.0;
pub const PNET_CELL: f64 = 12.0;

/// Turns one scale's P-Net output into candidates.
///
/// `prob` is the face-probability map (`out_h x out_w`, row-major), `reg` the four
/// regression maps (`4 x out_h x out_w`). A cell at row `r`, column `c` whose probability is
/// `>= threshold` proposes the box `[fix((2c+1)/s), fix((2r+1)/s), fix((2c+12)/s),
/// fix((2r+12)/s)]` at pyramid scale `s`.
///
/// Candidates are listed column by column (the reference runs P-Net on the transposed image
/// and scans its output in row-major order). When a scale has exactly one candidate, the
/// reference reads its regression from the mirrored column (`out_w - 1 - c`): a quirk of its
/// `np.flipud` on single detections, kept here so the boxes match.
pub fn generate_candidates(prob: &[f32], reg: &[f32], out_h: usize, out_w: usize, scale: f64, threshold: f64) -> Vec<Candidate> {
    let plane = out_h * out_w;
    debug_assert_eq!(prob.len(), plane);
    debug_assert_eq!(reg.len(), 4 * plane);
    let mut cells = Vec::new();
    for c in 0..out_w {
        for r in 0..out_h {
            if prob[r * out_w + c] as f64 >= threshold {
                cells.push((r, c));
            }
        }
    }
    let mirror = cells.len() == 1;
    cells
        .into_iter()
        .map(|(r, c)| {
            let rc = if mirror { out_w - 1 - c } else { c };
            let at = |k: usize| reg[k * plane + r * out_w + rc] as f64;
            let (cf, rf) = (c as f64, r as f64);
            Candidate {
                rect: [
                    ((PNET_STRIDE * cf + 1.0) / scale).trunc(),
                    ((PNET_STRIDE * rf + 1.0) / scale).trunc(),
                    ((PNET_STRIDE * cf + PNET_CELL) / scale).trunc(),
                    ((PNET_STRIDE * rf + PNET_CELL) / scale).trunc(),
                ],
                score: prob[r * out_w + c] as f64,
                reg: [at(0), at(1), at(2), at(3)],
            }
        })
        .collect()
}

/// Greedy non-maximum suppression: returns the indices of the kept boxes, best first.
///
/// The box with the highest score is kept and every remaining box that overlaps it by more
/// than `threshold` is dropped; repeat. Areas and intersections count `+1` pixel. Among equal
/// scores the box taken first is the one the reference's `np.argsort(s)` (NumPy's unstable
/// quicksort, read from the end) puts last: see [`argsort_like_numpy`].
pub fn nms(rects: &[Rect], scores: &[f64], threshold: f64, method: Overlap) -> Vec<usize> {
    debug_assert_eq!(rects.len(), scores.len());
    // ascending in NumPy's order (ties as its quicksort leaves them); the end is taken first
    let mut order = argsort_like_numpy(scores);
    let area: Vec<f64> = rects.iter().map(|r| (r[2] - r[0] + 1.0) * (r[3] - r[1] + 1.0)).collect();
    let mut pick = Vec::new();
    while let Some(i) = order.pop() {
        pick.push(i);
        let a = rects[i];
        order.retain(|&j| {
            let b = rects[j];
            let w = (a[2].min(b[2]) - a[0].max(b[0]) + 1.0).max(0.0);
            let h = (a[3].min(b[3]) - a[1].max(b[1]) + 1.0).max(0.0);
            let inter = w * h;
            let o = match method {
                Overlap::Min => inter / area[i].min(area[j]),
                Overlap::Union => inter / (area[i] + area[j] - inter),
            };
            // the reference keeps `o <= threshold`; a NaN overlap (degenerate boxes) is dropped
            o <= threshold
        });
    }
    pick
}

/// First-stage calibration: the offsets scale with the box size *without* the `+1`.
pub fn calibrate_pnet(rect: Rect, reg: [f64; 4]) -> Rect {
    let w = rect[2] - rect[0];
    let h = rect[3] - rect[1];
    [rect[0] + reg[0] * w, rect[1] + reg[1] * h, rect[2] + reg[2] * w, rect[3] + reg[3] * h]
}

/// R-Net / O-Net calibration (`bbreg`): the offsets scale with the `+1` box size.
pub fn bbreg(rect: Rect, reg: [f64; 4]) -> Rect {
    let w = rect[2] - rect[0] + 1.0;
    let h = rect[3] - rect[1] + 1.0;
    [rect[0] + reg[0] * w, rect[1] + reg[1] * h, rect[2] + reg[2] * w, rect[3] + reg[3] * h]
}

/// Makes a box square around its centre, side = the longer of width and height
/// (measured without the `+1`, like the reference's `rerec`).
pub fn square(rect: Rect) -> Rect {
    let w = rect[2] - rect[0];
    let h = rect[3] - rect[1];
    let l = w.max(h);
    let x1 = rect[0] + w * 0.5 - l * 0.5;
    let y1 = rect[1] + h * 0.5 - l * 0.5;
    [x1, y1, x1 + l, y1 + l]
}

/// Truncates every coordinate toward zero (NumPy's `np.fix`).
pub fn fix(rect: Rect) -> Rect {
    rect.map(f64::trunc)
}

/// The pixel window a (truncated) box crops from the image, before zero padding:
/// 0-based left/top and width/height, which may reach outside the image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub x: i64,
    pub y: i64,
    pub w: i64,
    pub h: i64,
}

/// The window of a truncated box: columns `x1 - 1 ..= x2 - 1`, rows `y1 - 1 ..= y2 - 1`
/// (the reference's `pad()`), or `None` when it is empty.
pub fn window(rect: Rect) -> Option<Window> {
    let [x1, y1, x2, y2] = rect.map(|v| v as i64);
    let w = x2 - x1 + 1;
    let h = y2 - y1 + 1;
    (w > 0 && h > 0).then_some(Window { x: x1 - 1, y: y1 - 1, w, h })
}

/// Landmarks in image coordinates from O-Net's relative outputs (`[x1..x5, y1..y5]`) and the
/// (truncated) box the O-Net crop was taken from.
pub fn landmarks(rect: Rect, points: &[f64; 10]) -> [[f64; 2]; 5] {
    let w = rect[2] - rect[0] + 1.0;
    let h = rect[3] - rect[1] + 1.0;
    std::array::from_fn(|k| [w * points[k] + rect[0] - 1.0, h * points[k + 5] + rect[1] - 1.0])
}

/// Intersection over union with the `+1` convention (used by tests and parity checks).
pub fn iou(a: Rect, b: Rect) -> f64 {
    let w = (a[2].min(b[2]) - a[0].max(b[0]) + 1.0).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1]) + 1.0).max(0.0);
    let inter = w * h;
    let area = |r: Rect| (r[2] - r[0] + 1.0) * (r[3] - r[1] + 1.0);
    inter / (area(a) + area(b) - inter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_column_major_with_box_formula() {
        // 2 x 3 map, cells (0,2) and (1,0) pass
        let prob = [0.1, 0.2, 0.9, 0.7, 0.0, 0.5];
        let reg: Vec<f32> = (0..24).map(|v| v as f32 / 100.0).collect();
        let c = generate_candidates(&prob, &reg, 2, 3, 0.5, 0.6);
        assert_eq!(c.len(), 2);
        // column 0 first: (r=1, c=0)
        assert_eq!(c[0].rect, [2.0, 6.0, 24.0, 28.0]);
        assert!((c[0].score - 0.7).abs() < 1e-6);
        assert!((c[0].reg[0] - 0.03).abs() < 1e-6 && (c[0].reg[3] - 0.21).abs() < 1e-6);
        // then (r=0, c=2)
        assert_eq!(c[1].rect, [10.0, 2.0, 32.0, 24.0]);
        assert!((c[1].reg[1] - 0.08).abs() < 1e-6);
        // truncation toward zero of the scaled corners
        let c = generate_candidates(&[1.0], &[0.0; 4], 1, 1, 0.3, 0.6);
        assert_eq!(c[0].rect, [3.0, 3.0, 40.0, 40.0]);
    }

    #[test]
    fn single_candidate_reads_mirrored_regression() {
        // 1 x 3 map, only column 0 passes: the regression comes from column 2
        let prob = [0.9, 0.1, 0.1];
        let mut reg = vec![0.0f32; 12];
        for k in 0..4 {
            reg[k * 3] = 1.0; // own column
            reg[k * 3 + 2] = 2.0; // mirrored column
        }
        let c = generate_candidates(&prob, &reg, 1, 3, 1.0, 0.6);
        assert_eq!(c[0].reg, [2.0; 4]);
        // with two candidates, each reads its own column
        let prob = [0.9, 0.1, 0.9];
        let c = generate_candidates(&prob, &reg, 1, 3, 1.0, 0.6);
        assert_eq!(c[0].reg, [1.0; 4]);
        assert_eq!(c[1].reg, [2.0; 4]);
    }

    #[test]
    fn nms_union_and_min() {
        let rects = [
            [0.0, 0.0, 9.0, 9.0],   // area 100
            [1.0, 1.0, 10.0, 10.0], // overlaps the first: inter 81, iou 81/119
            [20.0, 20.0, 29.0, 29.0],
            [2.0, 2.0, 6.0, 6.0], // inside the first: inter 25, min-overlap 1
        ];
        let scores = [0.9, 0.8, 0.7, 0.95];
        // union 0.5: box 3 first (0.95), then 0 (iou with 3 = 25/100 = 0.25 kept), 1 suppressed by 0
        assert_eq!(nms(&rects, &scores, 0.5, Overlap::Union), vec![3, 0, 2]);
        // min 0.7: box 3 suppresses 0 and 1 (both contain it)
        assert_eq!(nms(&rects, &scores, 0.7, Overlap::Min), vec![3, 2]);
        // threshold is exclusive: o == threshold keeps the box
        let r = [[0.0, 0.0, 1.0, 0.0], [1.0, 0.0, 2.0, 0.0]]; // inter 1, union 3
        assert_eq!(nms(&r, &[0.5, 0.6], 1.0 / 3.0, Overlap::Union), vec![1, 0]);
        assert!(nms(&[], &[], 0.5, Overlap::Union).is_empty());
    }

    #[test]
    fn nms_ties_take_the_later_box() {
        let rects = [[0.0, 0.0, 9.0, 9.0], [0.0, 0.0, 9.0, 9.0]];
        assert_eq!(nms(&rects, &[0.5, 0.5], 0.5, Overlap::Union), vec![1]);
    }

    /// 20 overlapping boxes whose P-Net scores all saturate at float32 0.99999988: the
    /// reference's `np.argsort` (NumPy 1.24.4) leaves box 9 last among them, so its NMS keeps
    /// box 9 (x = 18), where a stable sort would keep box 19 (x = 38). Expected picks from the
    /// reference's `nms` run under NumPy 1.24.4.
    #[test]
    fn nms_ties_as_numpy_quicksort() {
        let sat = f64::from(f32::from_bits(0x3f7f_fffe)); // 0.99999988
        let mut rects: Vec<Rect> = (0..20).map(|i| [2.0 * i as f64, 0.0, 2.0 * i as f64 + 60.0, 60.0]).collect();
        let mut scores = vec![sat; 20];
        rects.push([200.0, 200.0, 230.0, 230.0]);
        scores.push(f64::from(0.9f32));
        rects.push([300.0, 300.0, 330.0, 330.0]);
        scores.push(sat);
        assert_eq!(argsort_like_numpy(&scores), [20, 0, 19, 18, 17, 16, 15, 14, 13, 12, 11, 10, 8, 7, 6, 5, 4, 3, 2, 1, 9, 21]);
        assert_eq!(nms(&rects, &scores, 0.5, Overlap::Union), vec![21, 9, 20]);
        assert_eq!(nms(&rects, &scores, 0.7, Overlap::Min), vec![21, 9, 19, 20]);
    }

    #[test]
    fn regression_and_square() {
        let r = [10.0, 20.0, 30.0, 60.0];
        let close = |a: Rect, b: Rect| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-9);
        assert!(close(calibrate_pnet(r, [0.1, -0.1, 0.0, 0.5]), [12.0, 16.0, 30.0, 80.0]));
        assert!(close(bbreg(r, [0.1, -0.1, 0.0, 0.5]), [12.1, 15.9, 30.0, 80.5]));
        // 20 wide, 40 high: widened to 40 around the centre x = 20
        assert_eq!(square(r), [0.0, 20.0, 40.0, 60.0]);
        assert_eq!(fix([1.7, -1.7, -0.2, 3.0]), [1.0, -1.0, -0.0, 3.0]);
    }

    #[test]
    fn windows_and_landmarks() {
        assert_eq!(window([1.0, 1.0, 24.0, 24.0]), Some(Window { x: 0, y: 0, w: 24, h: 24 }));
        assert_eq!(window([-5.0, 3.0, 10.0, 20.0]), Some(Window { x: -6, y: 2, w: 16, h: 18 }));
        assert_eq!(window([5.0, 5.0, 3.0, 9.0]), None);
        let p = [0.0, 0.5, 1.0, 0.25, 0.75, 0.0, 0.5, 1.0, 0.25, 0.75];
        let l = landmarks([11.0, 21.0, 30.0, 40.0], &p);
        assert_eq!(l[0], [10.0, 20.0]);
        assert_eq!(l[1], [20.0, 30.0]);
        assert_eq!(l[2], [30.0, 40.0]);
    }

    #[test]
    fn iou_plus_one() {
        assert_eq!(iou([0.0, 0.0, 9.0, 9.0], [0.0, 0.0, 9.0, 9.0]), 1.0);
        assert!((iou([0.0, 0.0, 9.0, 9.0], [5.0, 0.0, 14.0, 9.0]) - 50.0 / 150.0).abs() < 1e-12);
    }
}
