//! The `--model_def` registry: maps the reference's module names
//! (`models.inception_resnet_v1`) to network configurations.

use burn::tensor::Device;

use super::inception_resnet_v1::{InceptionResnetV1, InceptionResnetV1Arch, InceptionResnetV1Config};

/// Canonical names of the networks `--model_def` accepts.
const KNOWN: &[&str] = &["inception_resnet_v1", "inception_resnet_v1_small"];

/// Canonical names of the networks `--model_def` accepts. Each may also be written with the
/// reference's package prefix (`models.inception_resnet_v1`), as a path
/// (`models/inception_resnet_v1`, `src/models/...`) and with a trailing `.py`.
pub fn known_models() -> &'static [&'static str] {
    KNOWN
}

/// Why a `--model_def` could not be turned into a network.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ModelDefError {
    /// The name is not one of [`known_models`].
    #[error("unknown --model_def '{name}'; known models: {}", known_list())]
    Unknown {
        /// The name as given.
        name: String,
    },
    /// The options are out of range.
    #[error("invalid options for --model_def '{name}': {reason}")]
    InvalidOptions {
        /// The canonical model name.
        name: String,
        /// What is wrong.
        reason: String,
    },
}

fn known_list() -> String {
    KNOWN.iter().map(|n| format!("{n} (or models.{n})")).collect::<Vec<_>>().join(", ")
}

/// The command-line options that shape the network.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelOptions {
    /// `--embedding_size` (default 128).
    pub embedding_size: usize,
    /// `--keep_probability` (default 1.0), in (0, 1].
    pub keep_probability: f64,
    /// Classes of the training Logits layer; 0 for none (embedding-only inference).
    pub num_classes: usize,
}

impl Default for ModelOptions {
    fn default() -> Self {
        ModelOptions { embedding_size: 128, keep_probability: 1.0, num_classes: 0 }
    }
}

/// The canonical name for a `--model_def` value, if it names a known model.
///
/// Accepts `NAME`, `models.NAME`, `models/NAME`, `src/models/NAME`, each optionally ending in
/// `.py` and surrounded by whitespace.
pub fn canonical_name(def: &str) -> Option<&'static str> {
    let mut s = def.trim();
    s = s.strip_suffix(".py").unwrap_or(s);
    let s = s.replace(['/', '\\'], ".");
    let mut s = s.as_str();
    s = s.strip_prefix("./").unwrap_or(s);
    s = s.trim_start_matches('.');
    s = s.strip_prefix("src.").unwrap_or(s);
    s = s.strip_prefix("models.").unwrap_or(s);
    KNOWN.iter().copied().find(|k| *k == s)
}

/// The configuration `--model_def name` builds with `options`.
pub fn config_from_def(name: &str, options: &ModelOptions) -> Result<InceptionResnetV1Config, ModelDefError> {
    let canonical = canonical_name(name).ok_or_else(|| ModelDefError::Unknown { name: name.to_string() })?;
    let arch = match canonical {
        "inception_resnet_v1" => InceptionResnetV1Arch::full(),
        "inception_resnet_v1_small" => InceptionResnetV1Arch::small(),
        _ => unreachable!("every known name has an architecture"),
    };
    let config = InceptionResnetV1Config::new()
        .with_embedding_size(options.embedding_size)
        .with_keep_probability(options.keep_probability)
        .with_num_classes(options.num_classes)
        .with_arch(arch);
    config.validate().map_err(|reason| ModelDefError::InvalidOptions { name: canonical.to_string(), reason })?;
    Ok(config)
}

/// Builds the network `--model_def name` names, on `device` (an autodiff device to train).
pub fn model_from_def(name: &str, options: &ModelOptions, device: &Device) -> Result<InceptionResnetV1, ModelDefError> {
    Ok(config_from_def(name, options)?.init(device))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_reference_spellings() {
        for (def, want) in [
            ("inception_resnet_v1", "inception_resnet_v1"),
            ("models.inception_resnet_v1", "inception_resnet_v1"),
            ("models.inception_resnet_v1.py", "inception_resnet_v1"),
            ("inception_resnet_v1.py", "inception_resnet_v1"),
            ("src/models/inception_resnet_v1.py", "inception_resnet_v1"),
            (" inception_resnet_v1_small ", "inception_resnet_v1_small"),
            ("models.inception_resnet_v1_small", "inception_resnet_v1_small"),
            ("models/inception_resnet_v1_small.py", "inception_resnet_v1_small"),
        ] {
            assert_eq!(canonical_name(def), Some(want), "{def}");
        }
        assert_eq!(known_models(), &["inception_resnet_v1", "inception_resnet_v1_small"]);
    }

    #[test]
    fn refuses_unknown_names_listing_known_ones() {
        for def in ["inception_resnet_v2", "models.squeezenet", "", "models.", "inception_resnet_v1_smal"] {
            let err = config_from_def(def, &ModelOptions::default()).unwrap_err();
            assert!(matches!(err, ModelDefError::Unknown { .. }), "{def}");
            let msg = err.to_string();
            assert!(msg.contains("inception_resnet_v1_small"), "{msg}");
            assert!(msg.contains("models.inception_resnet_v1"), "{msg}");
        }
    }

    #[test]
    fn builds_the_right_architecture() {
        let options = ModelOptions { embedding_size: 64, keep_probability: 0.8, num_classes: 3 };
        let full = config_from_def("models.inception_resnet_v1", &options).unwrap();
        assert_eq!(full.arch, InceptionResnetV1Arch::full());
        assert_eq!(full.embedding_size, 64);
        assert_eq!(full.num_classes, 3);
        let small = config_from_def("inception_resnet_v1_small", &options).unwrap();
        assert_eq!(small.arch, InceptionResnetV1Arch::small());
        let model = model_from_def("inception_resnet_v1_small", &options, &Device::flex()).unwrap();
        assert_eq!(model.embedding_size(), 64);
        assert_eq!(model.num_classes(), 3);
    }

    #[test]
    fn refuses_bad_options() {
        for options in [
            ModelOptions { keep_probability: 0.0, ..Default::default() },
            ModelOptions { keep_probability: 1.5, ..Default::default() },
            ModelOptions { embedding_size: 0, ..Default::default() },
        ] {
            let err = config_from_def("inception_resnet_v1", &options).unwrap_err();
            assert!(matches!(err, ModelDefError::InvalidOptions { .. }), "{err}");
        }
    }
}
