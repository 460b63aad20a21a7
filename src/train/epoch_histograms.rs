//! `--log_histograms`: at the end of each epoch, histograms of the network's trained tensors
//! and of the prelogits, into the run's TensorBoard events
//! ([`crate::train::tensorboard::TrainEvents::histograms`]).
//!
//! - every trained tensor (the reference logs `tf.trainable_variables()`): conv and fully
//!   connected weights and biases, batch-norm `beta` (and `gamma` only when the network
//!   trains it, `train_bn_gamma`: the reference has none), the Logits layer; batch-norm
//!   running statistics are not trained and are left out. Tag: the parameter's name with `/` for `.`
//!   (`repeat_1/0/branch1/1/conv/weight`).
//! - `prelogits`: the prelogits (inference mode) of a fixed probe batch, the first
//!   `--batch_size` training images without augmentation, so epochs compare like for like.
//!   Images that cannot be read are skipped (the training loop reports them).

use burn::store::{bridge, ModuleSnapshot};
use burn::tensor::{Tensor, TensorData};

use super::trainer::Training;
use crate::data::image_io::load_rgb;
use crate::eval::embed::input_of;
use crate::model::InceptionResnetV1;

/// The trained tensors of `model` as (tag, values).
pub fn weight_values(model: &InceptionResnetV1, with_gamma: bool) -> Vec<(String, Vec<f32>)> {
    model
        .collect(None, None, false)
        .into_iter()
        .filter(|t| !t.name.ends_with(".running_mean") && !t.name.ends_with(".running_var") && (with_gamma || !t.name.ends_with(".gamma")))
        .filter_map(|t| {
            let values = bridge::to_data(&t).ok()?.try_into_vec_as::<f32>().ok()?;
            Some((t.name.replace('.', "/"), values))
        })
        .collect()
}

impl Training<'_> {
    /// Writes the epoch's histograms at `step` (when `--log_histograms`).
    pub fn log_histograms(&mut self, step: u64) {
        if !self.opts.log_histograms {
            return;
        }
        let mut values = weight_values(self.state.step.model(), self.state.config.train_bn_gamma);
        if let Some(p) = self.probe_prelogits() {
            values.push(("prelogits".into(), p));
        }
        self.logs.events.histograms(step, &values);
    }

    fn probe_prelogits(&self) -> Option<Vec<f32>> {
        let size = self.opts.image_size;
        let s = self.opts.standardization();
        let per = 3 * (size as usize).pow(2);
        let mut buf = Vec::new();
        let mut n = 0;
        for path in self.data.train_paths.iter().take(self.opts.batch_size.max(1)) {
            let Ok(img) = load_rgb(path) else { continue };
            buf.resize((n + 1) * per, 0.0);
            input_of(&img, size, s, false, &mut buf[n * per..]);
            n += 1;
        }
        if n == 0 {
            return None;
        }
        let device = self.state.step.device();
        let x = Tensor::<4>::from_data(TensorData::new(buf, [n, 3, size as usize, size as usize]), device);
        self.state.step.inference_model().forward(x).prelogits.to_data().try_into_vec_as::<f32>().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::InceptionResnetV1Config;
    use burn::tensor::Device;

    #[test]
    fn weight_tags_are_trained_tensors() {
        let model = InceptionResnetV1Config::small(8, 1.0, 3).init(&Device::flex());
        let v = weight_values(&model, false);
        let tags: Vec<&str> = v.iter().map(|(t, _)| t.as_str()).collect();
        assert!(
            tags.contains(&"conv2d_1a/conv/weight") && tags.contains(&"last_linear/weight") && tags.contains(&"logits/bias"),
            "{tags:?}"
        );
        assert!(tags.contains(&"repeat_1/0/branch1/1/bn/beta"), "{tags:?}");
        assert!(tags.iter().all(|t| !t.contains("running") && !t.ends_with("gamma")), "{tags:?}");
        assert!(weight_values(&model, true).iter().any(|(t, _)| t.ends_with("/gamma")));
        let (_, w) = v.iter().find(|(t, _)| t == "last_linear/weight").unwrap();
        assert_eq!(w.len(), model.last_linear.weight.dims().iter().product::<usize>());
    }
}
