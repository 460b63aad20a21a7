//! The reference's four result lines of `validate_on_lfw.py`, printed by `facenet validate`
//! and the demo.

use super::metrics::Evaluation;

/// The four lines: accuracy, VAL @ FAR, AUC, EER.
pub fn summary_lines(e: &Evaluation) -> String {
    format!(
        "Accuracy: {:.5}+-{:.5}\nValidation rate: {:.5}+-{:.5} @ FAR={:.5}\nArea Under Curve (AUC): {:.3}\nEqual Error Rate (EER): {:.3}",
        e.accuracy_mean, e.accuracy_std, e.val_mean, e.val_std, e.far_mean, e.auc, e.eer
    )
}

/// Prints [`summary_lines`] to stdout.
pub fn print_summary(e: &Evaluation) {
    println!("{}", summary_lines(e));
}
