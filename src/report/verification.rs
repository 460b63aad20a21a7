//! The verification report: metric table, ROC, distance histograms, per-fold table and the
//! worst false accepts / false rejects as thumbnails.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::charts::{distance_histogram_svg, roc_svg};
use super::html::{escape, thumbnail_uri, Page};
use crate::eval::metrics::Evaluation;
use crate::util::atomic::write_atomic;

/// Adds the verification sections to `page`. `image_paths` (two per pair) enables the
/// thumbnails of the worst errors.
pub fn add_verification(page: &mut Page, e: &Evaluation, issame: &[bool], image_paths: Option<&[PathBuf]>, worst: usize) -> Result<()> {
    let folds = e.accuracy_per_fold.len();
    page.heading(2, "Verification (LFW protocol)");
    page.table(
        &["pairs", "folds", "accuracy", "VAL @ FAR", "FAR", "AUC", "EER"],
        &[vec![
            issame.len().to_string(),
            folds.to_string(),
            format!("{:.5} ± {:.5}", e.accuracy_mean, e.accuracy_std),
            format!("{:.5} ± {:.5}", e.val_mean, e.val_std),
            format!("{:.5}", e.far_mean),
            format!("{:.4}", e.auc),
            format!("{:.4}", e.eer),
        ]],
    );
    let threshold = if folds > 0 { e.best_threshold_per_fold.iter().sum::<f64>() / folds as f64 } else { 0.0 };
    page.figures(&[
        roc_svg(&e.fpr, &e.tpr, "ROC (averaged over folds)")?,
        distance_histogram_svg(&e.distances, issame, threshold, "Distances of same / different pairs")?,
    ]);
    page.heading(3, "Per fold");
    let rows: Vec<Vec<String>> = (0..folds)
        .map(|k| {
            vec![
                (k + 1).to_string(),
                format!("{:.5}", e.accuracy_per_fold[k]),
                format!("{:.2}", e.best_threshold_per_fold[k]),
                format!("{:.5}", e.val_per_fold.get(k).copied().unwrap_or(f64::NAN)),
                format!("{:.5}", e.far_per_fold.get(k).copied().unwrap_or(f64::NAN)),
                format!("{:.4}", e.val_threshold_per_fold.get(k).copied().unwrap_or(f64::NAN)),
            ]
        })
        .collect();
    page.table(&["fold", "accuracy", "threshold", "VAL", "FAR", "VAL threshold"], &rows);

    if let Some(paths) = image_paths {
        if paths.len() == 2 * issame.len() {
            let mut fa: Vec<usize> = (0..issame.len()).filter(|&i| !issame[i] && e.distances[i] < threshold).collect();
            fa.sort_by(|&a, &b| e.distances[a].total_cmp(&e.distances[b]));
            let mut fr: Vec<usize> = (0..issame.len()).filter(|&i| issame[i] && e.distances[i] >= threshold).collect();
            fr.sort_by(|&a, &b| e.distances[b].total_cmp(&e.distances[a]));
            for (title, list) in
                [("Worst false accepts (different people, small distance)", fa), ("Worst false rejects (same person, large distance)", fr)]
            {
                page.heading(3, &format!("{title}: {} at threshold {threshold:.3}", list.len()));
                page.raw(&thumbs(&list[..list.len().min(worst)], paths, &e.distances));
            }
        }
    }
    Ok(())
}

fn thumbs(pairs: &[usize], paths: &[PathBuf], dist: &[f64]) -> String {
    let mut s = String::from("<div class=\"thumbs\">");
    for &i in pairs {
        let _ = write!(s, "<div class=\"pair\">");
        for p in [&paths[2 * i], &paths[2 * i + 1]] {
            match thumbnail_uri(p, 96) {
                Some(uri) => {
                    let _ = write!(s, "<img src=\"{uri}\" title=\"{}\">", escape(&p.display().to_string()));
                }
                None => {
                    let _ = write!(s, "<span>{}</span>", escape(&p.display().to_string()));
                }
            }
        }
        let name = |p: &Path| p.file_stem().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let _ = write!(s, "<br>{} / {}<br>distance {:.3}</div>", escape(&name(&paths[2 * i])), escape(&name(&paths[2 * i + 1])), dist[i]);
    }
    s.push_str("</div>");
    s
}

/// Writes a page with only the verification sections.
pub fn write_verification_report(path: &Path, title: &str, e: &Evaluation, issame: &[bool], image_paths: Option<&[PathBuf]>) -> Result<()> {
    let mut page = Page::new(title);
    add_verification(&mut page, e, issame, image_paths, 12)?;
    write_atomic(path, page.render().as_bytes()).with_context(|| format!("cannot write {}", path.display()))
}
