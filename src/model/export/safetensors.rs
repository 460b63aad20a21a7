//! A single `.safetensors` file: our parameter names (those of a checkpoint's
//! `model.safetensors`: burn's, BN `gamma`/`beta`, Linear weights `[in, out]`) and, in the
//! header's `__metadata__` under [`SAFETENSORS_MODEL_KEY`], the `model.json` a checkpoint
//! keeps beside its weights, so that the one file loads back anywhere a model is taken
//! ([`crate::model::load::load_model`]).

use burn::module::Module;
use burn::store::{ModuleSnapshot, SafetensorsStore};

use super::ExportError;
use crate::model::load::{ModelFile, ModelMeta, FORMAT, SAFETENSORS_MODEL_KEY};
use crate::model::registry::{config_from_def, ModelOptions};
use crate::model::{InceptionResnetV1, InceptionResnetV1Config};

/// The configuration that builds `model` (without a Logits layer): its `model_def`'s
/// architecture, embedding size and batch-norm epsilon. Checked against the model's number
/// of values.
pub fn config_of(model: &InceptionResnetV1, meta: &ModelMeta) -> Result<InceptionResnetV1Config, ExportError> {
    let options = ModelOptions { embedding_size: meta.embedding_size, keep_probability: 1.0, num_classes: 0 };
    let config =
        config_from_def(&meta.model_def, &options).map_err(|e| ExportError::Config(e.to_string()))?.with_bn_epsilon(model.last_bn.epsilon);
    let values = float_values(model);
    if config.values() != values {
        return Err(ExportError::Config(format!(
            "the network ({values} values) is not a {} of {}-d embeddings ({} values)",
            meta.model_def,
            meta.embedding_size,
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
