//! The demo's report: real photos with boxes and landmarks and their aligned crops, training
//! curves, the verification section, timings.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};

use super::{DemoOptions, DemoResult};
use crate::report::charts::line_chart_svg;
use crate::report::html::{escape, png_data_uri, thumbnail_uri, Page};
use crate::report::verification::add_verification;
use crate::util::atomic::write_atomic;

pub fn write_demo_report(path: &Path, o: &DemoOptions, r: &DemoResult) -> Result<()> {
    let mut page = Page::new("facenet demo");
    let e = &r.verification.evaluation;
    page.paragraph(&format!(
        "Small Inception-ResNet-v1 trained for {} epochs on {} synthetic identities x {} images, evaluated on {} held-out pairs.",
        r.training.epochs_completed,
        o.identities,
        o.images_per_identity,
        r.verification.issame.len()
    ));
    page.table(
        &["accuracy", "VAL @ FAR=1e-3", "AUC", "EER", "total time"],
        &[vec![
            format!("{:.4} ± {:.4}", e.accuracy_mean, e.accuracy_std),
            format!("{:.4} ± {:.4} @ {:.4}", e.val_mean, e.val_std, e.far_mean),
            format!("{:.4}", e.auc),
            format!("{:.4}", e.eer),
            format!("{:.0} s", r.timings.iter().map(|t| t.1).sum::<f64>()),
        ]],
    );

    page.heading(2, "Real photos: MTCNN detection and alignment");
    if let Some(note) = &r.photo_note {
        page.paragraph(note);
    }
    for p in &r.photos {
        let name = p.photo.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        page.heading(3, &format!("{name}: {} face(s)", p.faces.len()));
        let mut html = String::from("<div class=\"figs\">");
        if let Ok(bytes) = std::fs::read(&p.annotated) {
            let _ = write!(html, "<img style=\"max-width:720px\" src=\"{}\" title=\"{}\">", png_data_uri(&bytes), escape(&name));
        }
        html.push_str("<div class=\"crop\">");
        for c in &p.crops {
            if let Some(uri) = thumbnail_uri(c, 112) {
                let _ = write!(html, "<img src=\"{uri}\" title=\"{}\">", escape(&c.display().to_string()));
            }
        }
        html.push_str("</div></div>");
        page.raw(&html);
        let rows: Vec<Vec<String>> = p
            .faces
            .iter()
            .enumerate()
            .map(|(i, f)| {
                vec![
                    i.to_string(),
                    format!("{:.4}", f.prob),
                    format!("{:.0} {:.0} {:.0} {:.0}", f.bbox[0], f.bbox[1], f.bbox[2], f.bbox[3]),
                ]
            })
            .collect();
        page.table(&["face", "probability", "box x1 y1 x2 y2"], &rows);
    }

    page.heading(2, "Training");
    let h = &r.training.history;
    let series = |f: &dyn Fn(&crate::train::stats::EpochRecord) -> Option<f64>| -> Vec<(f64, f64)> {
        h.iter().filter_map(|e| f(e).map(|v| (e.epoch as f64, v))).collect()
    };
    page.figures(&[
        line_chart_svg(
            "Loss per epoch",
            "epoch",
            "loss",
            &[("total".into(), series(&|e| Some(e.loss))), ("cross-entropy".into(), series(&|e| Some(e.xent)))],
        )?,
        line_chart_svg(
            "Accuracy per epoch",
            "epoch",
            "accuracy",
            &[
                ("training batches".into(), series(&|e| Some(e.accuracy))),
                ("held-out pairs (LFW protocol)".into(), series(&|e| e.lfw.as_ref().map(|l| l.accuracy))),
            ],
        )?,
        line_chart_svg("Learning rate (schedule file)", "epoch", "learning rate", &[("lr".into(), series(&|e| Some(e.lr)))])?,
    ]);
    let rows: Vec<Vec<String>> = h
        .iter()
        .map(|e| {
            vec![
                e.epoch.to_string(),
                format!("{:.4}", e.loss),
                format!("{:.4}", e.xent),
                format!("{:.3}", e.accuracy),
                format!("{:.4}", e.lr),
                e.lfw.as_ref().map(|l| format!("{:.4}", l.accuracy)).unwrap_or_default(),
                e.lfw.as_ref().map(|l| format!("{:.4}", l.val)).unwrap_or_default(),
                format!("{:.0}", e.images_per_s),
            ]
        })
        .collect();
    page.table(&["epoch", "loss", "xent", "accuracy", "lr", "LFW accuracy", "VAL", "images/s"], &rows);
    page.paragraph(&format!(
        "Run folders: {} (statistics), {} (checkpoints).",
        r.training.log_dir.display(),
        r.training.model_dir.display()
    ));

    add_verification(&mut page, e, &r.verification.issame, Some(&r.verification.image_paths), 8)?;

    page.heading(2, "Timings");
    let rows: Vec<Vec<String>> = r.timings.iter().map(|(k, s)| vec![k.clone(), format!("{s:.1} s")]).collect();
    page.table(&["step", "time"], &rows);
    write_atomic(path, page.render().as_bytes()).with_context(|| format!("cannot write {}", path.display()))
}
