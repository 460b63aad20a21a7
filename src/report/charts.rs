//! SVG charts: ROC curve, distance histograms, training curves.

use anyhow::{anyhow, Result};
use plotters::prelude::*;

const SIZE: (u32, u32) = (640, 400);
const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

fn err<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow!("chart: {e}")
}

/// ROC: true accept rate against false accept rate on a log axis (1e-4 .. 1). Points with a
/// false accept rate of 0 are drawn at the left edge.
pub fn roc_svg(fpr: &[f64], tpr: &[f64], title: &str) -> Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let lo = 1e-4;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d((lo..1.0f64).log_scale(), 0.0..1.0f64)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("false accept rate (log)")
            .y_desc("true accept rate")
            .x_label_formatter(&|x| format!("{x:.0e}"))
            .draw()
            .map_err(err)?;
        let mut pts: Vec<(f64, f64)> = fpr.iter().zip(tpr).map(|(&x, &y)| (x.max(lo), y)).collect();
        pts.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
        chart.draw_series(LineSeries::new(pts, PALETTE[0].stroke_width(2))).map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// Overlaid histograms of same-person and different-person distances with a vertical line
/// at `threshold`.
pub fn distance_histogram_svg(distances: &[f64], issame: &[bool], threshold: f64, title: &str) -> Result<String> {
    let max = distances.iter().copied().filter(|d| d.is_finite()).fold(threshold, f64::max).max(1e-9) * 1.05;
    let bins = 50usize;
    let width = max / bins as f64;
    let count = |same: bool| {
        let mut h = vec![0usize; bins];
        for (&d, &s) in distances.iter().zip(issame) {
            if s == same && d.is_finite() {
                h[((d / width) as usize).min(bins - 1)] += 1;
            }
        }
        h
    };
    let (hs, hd) = (count(true), count(false));
    let top = hs.iter().chain(&hd).copied().max().unwrap_or(1).max(1) as f64 * 1.1;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(0.0..max, 0.0..top)
            .map_err(err)?;
        chart.configure_mesh().x_desc("distance").y_desc("pairs").draw().map_err(err)?;
        for (h, color, label) in [(&hs, PALETTE[2], "same person"), (&hd, PALETTE[1], "different people")] {
            chart
                .draw_series(h.iter().enumerate().map(|(i, &c)| {
                    let x0 = i as f64 * width;
                    Rectangle::new([(x0, 0.0), (x0 + width, c as f64)], color.mix(0.45).filled())
                }))
                .map_err(err)?
                .label(label)
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.mix(0.6).filled()));
        }
        chart
            .draw_series(LineSeries::new(vec![(threshold, 0.0), (threshold, top)], BLACK.stroke_width(2)))
            .map_err(err)?
            .label(format!("threshold {threshold:.3}"))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 12, y)], BLACK.stroke_width(2)));
        chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw().map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// Line chart of several named series sharing the x axis (e.g. loss per epoch).
pub fn line_chart_svg(title: &str, x_desc: &str, y_desc: &str, series: &[(String, Vec<(f64, f64)>)]) -> Result<String> {
    let pts = series.iter().flat_map(|(_, p)| p.iter()).filter(|(x, y)| x.is_finite() && y.is_finite());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in pts {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if x0 > x1 {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    if x1 - x0 < 1e-12 {
        x1 = x0 + 1.0;
    }
    let pad = ((y1 - y0) * 0.05).max(1e-6);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(x0..x1, (y0 - pad)..(y1 + pad))
            .map_err(err)?;
        chart.configure_mesh().x_desc(x_desc).y_desc(y_desc).draw().map_err(err)?;
        for (i, (name, p)) in series.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            let p: Vec<(f64, f64)> = p.iter().copied().filter(|(x, y)| x.is_finite() && y.is_finite()).collect();
            chart
                .draw_series(LineSeries::new(p, color.stroke_width(2)))
                .map_err(err)?
                .label(name.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 14, y)], color.stroke_width(2)));
        }
        if series.len() > 1 {
            chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw().map_err(err)?;
        }
        root.present().map_err(err)?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_are_svg() {
        let roc = roc_svg(&[0.0, 0.001, 0.1, 1.0], &[0.2, 0.6, 0.9, 1.0], "ROC").unwrap();
        assert!(roc.starts_with("<svg") && roc.contains("polyline"), "{}", &roc[..100]);
        let h = distance_histogram_svg(&[0.1, 0.2, 1.5, 1.7], &[true, true, false, false], 1.0, "d").unwrap();
        assert!(h.contains("threshold 1.000"));
        let l = line_chart_svg("loss", "epoch", "loss", &[("train".into(), vec![(1.0, 3.0), (2.0, 2.0)])]).unwrap();
        assert!(l.contains("loss"));
        // degenerate inputs do not fail
        line_chart_svg("empty", "x", "y", &[]).unwrap();
        distance_histogram_svg(&[], &[], 0.0, "none").unwrap();
    }
}
