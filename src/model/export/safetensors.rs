//! A single `.safetensors` file: our parameter names (those of a checkpoint's
//! `model.safetensors`: burn's, BN `gamma`/`beta`, Linear weights `[in, out]`) and, in the
//! header's `__metadata__` under [`SAFETENSORS_MODEL_KEY`], the `model.json` a checkpoint
//! keeps beside its weights, so that the one file loads back anywhere a model is taken
//! ([`crate::model::load::load_model`]).

use burn::module::Module;
use burn::store::{ModuleSnapshot, SafetensorsStore};

use super::ExportError;
use crate::model::blocks::{BasicConv2d, PaddingMode};
use crate::model::load::{ModelFile, ModelMeta, FORMAT, SAFETENSORS_MODEL_KEY};
use crate::model::registry::{config_from_def, ModelOptions};
use crate::model::{InceptionResnetV1, InceptionResnetV1Config};

/// The configuration that builds `model` (without a Logits layer), read from the network
/// itself: every width from its layers' shapes, the repeats, residual scales, padding and
/// batch-norm epsilon (a TensorFlow model of other widths is written as it is); the other
/// settings from `meta.model_def`. Checked against the model's number of values.
pub fn config_of(model: &InceptionResnetV1, meta: &ModelMeta) -> Result<InceptionResnetV1Config, ExportError> {
    let options = ModelOptions { embedding_size: meta.embedding_size, keep_probability: 1.0, num_classes: 0 };
    let base = config_from_def(&meta.model_def, &options).map_err(|e| ExportError::Config(e.to_string()))?;
    let out = |l: &BasicConv2d| l.conv.weight.dims()[0];
    let m = model;
    let mut arch = base.arch.clone();
    arch.stem = [out(&m.conv2d_1a), out(&m.conv2d_2a), out(&m.conv2d_2b), out(&m.conv2d_3b), out(&m.conv2d_4a), out(&m.conv2d_4b)];
    arch.padding = match m.conv2d_1a.conv.padding {
        burn::nn::PaddingConfig2d::Same => PaddingMode::Same,
        _ => PaddingMode::Valid,
    };
    arch.block35_repeats = m.repeat_1.len();
    if let Some(b) = m.repeat_1.first() {
        (arch.block35_width, arch.block35_scale) = (out(&b.branch0), b.scale);
    }
    let ra = &m.mixed_6a;
    if ra.branch1.len() == 3 {
        arch.reduction_a = [out(&ra.branch1[0]), out(&ra.branch1[1]), out(&ra.branch1[2]), out(&ra.branch0)];
    }
    arch.block17_repeats = m.repeat_2.len();
    if let Some(b) = m.repeat_2.first() {
        (arch.block17_width, arch.block17_scale) = (out(&b.branch0), b.scale);
    }
    let rb = &m.mixed_7a;
    if rb.branch0.len() == 2 && rb.branch1.len() == 2 && rb.branch2.len() == 3 {
        arch.reduction_b = [
            out(&rb.branch0[0]),
            out(&rb.branch0[1]),
            out(&rb.branch1[0]),
            out(&rb.branch1[1]),
            out(&rb.branch2[0]),
            out(&rb.branch2[1]),
            out(&rb.branch2[2]),
        ];
    }
    arch.block8_repeats = m.repeat_3.len();
    arch.block8_width = out(&m.block8.branch0);
    if let Some(b) = m.repeat_3.first() {
        arch.block8_scale = b.scale;
    }
    let config = base.with_arch(arch).with_embedding_size(m.embedding_size()).with_bn_epsilon(m.last_bn.epsilon);
    config.validate().map_err(ExportError::Config)?;
    let values = float_values(model);
    if config.values() != values {
        return Err(ExportError::Config(format!(
            "the network ({values} values) is not the {} it seems ({} values)",
            meta.model_def,
            config.values()
        )));
    }
    Ok(config)
}

/// Parameters and batch-norm running statistics of `model` (what its weights file holds).
fn float_values(model: &InceptionResnetV1) -> usize {
    use burn::module::{ModuleVisitor, Param};
    use burn::tensor::Tensor;
    struct Count(usize);
    impl ModuleVisitor for Count {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            self.0 += p.val().shape().num_elements();
        }
    }
    let mut c = Count(0);
    model.visit(&mut c);
    c.0
}

/// `model` (batch norms not folded) as the bytes of a `.safetensors` file with its
/// `model.json` in the metadata.
pub fn safetensors_bytes(model: &InceptionResnetV1, meta: &ModelMeta) -> Result<Vec<u8>, ExportError> {
    if model.conv2d_1a.folded {
        return Err(ExportError::Folded);
    }
    let config = config_of(model, meta)?;
    let file = ModelFile { format: FORMAT.into(), meta: ModelMeta { num_classes: 0, ..meta.clone() }, config, epoch: 0, global_step: 0 };
    file.check().map_err(ExportError::Config)?;
    let json = serde_json::to_string(&file).map_err(|e| ExportError::Config(e.to_string()))?;
    let mut store =
        SafetensorsStore::from_bytes(None).metadata(SAFETENSORS_MODEL_KEY, json).with_predicate(|path, _| !path.starts_with("logits."));
    model.save_into(&mut store).map_err(|e| ExportError::Tensor { name: "(safetensors)".into(), reason: e.to_string() })?;
    store.get_bytes().map_err(|e| ExportError::Tensor { name: "(safetensors)".into(), reason: e.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::preprocess::Standardization;
    use burn::tensor::Device;

    #[test]
    fn config_is_read_from_the_network() {
        // widths a model_def does not have (as the TF fixtures' reference network / 16)
        let mut config = InceptionResnetV1Config::small(24, 1.0, 0);
        config.arch.stem = [4, 6, 8, 10, 12, 14];
        config.arch.block17_repeats = 3;
        config.arch.reduction_b = [8, 9, 10, 11, 12, 13, 14];
        config.arch.block8_width = 6;
        config.bn_epsilon = 1e-5;
        let model = config.init(&Device::flex());
        let meta = ModelMeta {
            model_def: "inception_resnet_v1_small".into(),
            embedding_size: 24,
            image_size: 32,
            standardization: Standardization::Fixed,
            num_classes: 0,
        };
        let got = config_of(&model, &meta).unwrap();
        assert_eq!(got.arch, config.arch);
        assert_eq!((got.embedding_size, got.bn_epsilon), (24, 1e-5));
        assert!(safetensors_bytes(&model, &meta).is_ok());
    }
}
