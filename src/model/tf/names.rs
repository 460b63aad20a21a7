//! The reference's variable names (`src/models/inception_resnet_v1.py` under TF-slim) mapped
//! onto our network, and its architecture read from the tensors' shapes.
//!
//! | ours (facenet-pytorch names) | the reference's |
//! |---|---|
//! | `conv2d_1a` ... `conv2d_4b` | `InceptionResnetV1/Conv2d_1a_3x3` ... `Conv2d_4b_3x3` |
//! | `repeat_1.<i>`, `repeat_2.<i>`, `repeat_3.<i>` | `Repeat/block35_<i+1>`, `Repeat_1/block17_<i+1>`, `Repeat_2/block8_<i+1>` |
//! | `block8` (no ReLU) | `Block8` |
//! | `mixed_6a`, `mixed_7a` | `Mixed_6a`, `Mixed_7a` |
//! | `branch0`, `branch1.<k>`, ... | `Branch_0/Conv2d_1x1`, `Branch_1/Conv2d_0a_1x1`, `Branch_1/Conv2d_0b_3x3`, ... |
//! | a block's `conv2d` (with bias) | its `Conv2d_1x1` (`weights`, `biases`) |
//! | `last_linear`, `last_bn` | `Bottleneck/weights`, `Bottleneck/BatchNorm` |
//! | `logits` | `Logits/weights`, `Logits/biases` (outside `InceptionResnetV1/`) |
//!
//! Per layer: `weights` (conv `[kh, kw, in, out]`, transposed to burn's `[out, in, kh, kw]`;
//! dense `[in, out]`, burn's layout too), `biases`, and `BatchNorm/{beta, moving_mean,
//! moving_variance}`. The reference's batch norm has no gamma (`scale=False`): ours is set to 1
//! (a `gamma` in the file, from a network trained with `scale=True`, is read instead); its
//! epsilon, 0.001, is our default.
//!
//! The architecture comes from the shapes: every width from a weights tensor, the repeats from
//! the blocks present, the embedding size from `Bottleneck/weights`, the classes from
//! `Logits/weights`. The published models (20180402-114759: 512-d, 20180408-102900: 128-d)
//! have the reference's widths; smaller test networks built by the same code load the same way.

use burn::module::{Param, RunningState};
use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, Linear};
use burn::tensor::{Tensor, TensorData};

use super::graph::MAX_FILL;
use super::{TensorSource, TfError};
use crate::model::blocks::{BasicConv2d, Block17, Block35, Block8, PaddingMode, ReductionA, ReductionB};
use crate::model::inception_resnet_v1::{InceptionResnetV1, InceptionResnetV1Arch, InceptionResnetV1Config, MAX_REPEATS};

/// The reference network's variable scope.
pub const SCOPE: &str = "InceptionResnetV1";

fn scoped(s: &str) -> String {
    format!("{SCOPE}/{s}")
}

/// How many `<prefix><i>/Branch_0/Conv2d_1x1/weights` there are for i = 1, 2, ... in a row.
fn repeats(src: &dyn TensorSource, prefix: &str) -> usize {
    (1..=MAX_REPEATS + 1).take_while(|i| src.shape(&scoped(&format!("{prefix}{i}/Branch_0/Conv2d_1x1/weights"))).is_some()).count()
}

/// The network configuration of a TensorFlow model of the reference's Inception-ResNet-v1,
/// from its tensors' shapes. A tensor that is absent leaves the reference's value (the
/// loading then lists what is missing).
pub fn infer_config(src: &dyn TensorSource) -> Result<InceptionResnetV1Config, TfError> {
    let full = InceptionResnetV1Arch::full();
    let out =
        |scope: &str, default: usize| src.shape(&scoped(&format!("{scope}/weights"))).and_then(|s| s.last().copied()).unwrap_or(default);
    let count = |prefix: &str, default: usize| Some(repeats(src, prefix)).filter(|&n| n > 0).unwrap_or(default);
    let s = full.stem;
    let (ra, rb) = (full.reduction_a, full.reduction_b);
    let arch = InceptionResnetV1Arch {
        stem: [
            out("Conv2d_1a_3x3", s[0]),
            out("Conv2d_2a_3x3", s[1]),
            out("Conv2d_2b_3x3", s[2]),
            out("Conv2d_3b_1x1", s[3]),
            out("Conv2d_4a_3x3", s[4]),
            out("Conv2d_4b_3x3", s[5]),
        ],
        padding: PaddingMode::Valid,
        block35_repeats: count("Repeat/block35_", full.block35_repeats),
        block35_width: out("Repeat/block35_1/Branch_0/Conv2d_1x1", full.block35_width),
        reduction_a: [
            out("Mixed_6a/Branch_1/Conv2d_0a_1x1", ra[0]),
            out("Mixed_6a/Branch_1/Conv2d_0b_3x3", ra[1]),
            out("Mixed_6a/Branch_1/Conv2d_1a_3x3", ra[2]),
            out("Mixed_6a/Branch_0/Conv2d_1a_3x3", ra[3]),
        ],
        block17_repeats: count("Repeat_1/block17_", full.block17_repeats),
        block17_width: out("Repeat_1/block17_1/Branch_0/Conv2d_1x1", full.block17_width),
        reduction_b: [
            out("Mixed_7a/Branch_0/Conv2d_0a_1x1", rb[0]),
            out("Mixed_7a/Branch_0/Conv2d_1a_3x3", rb[1]),
            out("Mixed_7a/Branch_1/Conv2d_0a_1x1", rb[2]),
            out("Mixed_7a/Branch_1/Conv2d_1a_3x3", rb[3]),
            out("Mixed_7a/Branch_2/Conv2d_0a_1x1", rb[4]),
            out("Mixed_7a/Branch_2/Conv2d_0b_3x3", rb[5]),
            out("Mixed_7a/Branch_2/Conv2d_1a_3x3", rb[6]),
        ],
        block8_repeats: count("Repeat_2/block8_", full.block8_repeats),
        block8_width: out("Repeat_2/block8_1/Branch_0/Conv2d_1x1", full.block8_width),
        ..full
    };
    let embedding = out("Bottleneck", 128);
    let classes = src.shape("Logits/weights").and_then(|s| s.last().copied()).unwrap_or(0);
    let config = InceptionResnetV1Config::new().with_embedding_size(embedding).with_num_classes(classes).with_arch(arch);
    config
        .validate()
        .map_err(|e| TfError::NotAModel { path: src.path().to_path_buf(), reason: format!("its shapes describe no valid network: {e}") })?;
    Ok(config)
}

/// Reads tensors into layers, collecting the names that are absent.
struct Loader<'a> {
    src: &'a dyn TensorSource,
    /// Only check names and shapes (no parameter is touched, none initialised).
    dry: bool,
    /// Names and (TensorFlow) shapes asked for and absent.
    missing: Vec<(String, Vec<usize>)>,
    /// Values of the tensors asked for and present.
    wanted: u64,
}

/// `param` set to `value` on its own device (its id and whether it is trained kept).
fn set<const D: usize>(param: &mut Param<Tensor<D>>, value: TensorData, f: impl FnOnce(Tensor<D>) -> Tensor<D>) {
    *param = param.clone().map(|old| f(Tensor::from_data(value, &old.device())));
}

impl Loader<'_> {
    /// The values of `name`, checked to have `shape`; `None` (and noted) when absent.
    fn read(&mut self, name: &str, shape: &[usize]) -> Result<Option<TensorData>, TfError> {
        match self.src.shape(name) {
            None => {
                self.missing.push((name.to_string(), shape.to_vec()));
                Ok(None)
            }
            Some(s) if s != shape => Err(TfError::Tensor {
                path: self.src.path().to_path_buf(),
                name: name.to_string(),
                reason: format!("shape {s:?}, the network needs {shape:?}"),
            }),
            Some(_) if self.dry => {
                self.wanted += shape.iter().map(|&d| d as u64).product::<u64>();
                Ok(None)
            }
            Some(_) => Ok(Some(TensorData::new(self.src.read_f32(name)?, shape.to_vec()))),
        }
    }

    /// A convolution: `<scope>/weights` (HWIO -> OIHW) and, when the layer has one, `biases`.
    fn conv(&mut self, conv: &mut Conv2d, scope: &str) -> Result<(), TfError> {
        let [o, i, kh, kw] = conv.weight.lazy_shape().dims::<4>();
        if let Some(v) = self.read(&format!("{scope}/weights"), &[kh, kw, i, o])? {
            set(&mut conv.weight, v, |t| t.permute([3, 2, 0, 1]));
        }
        if let Some(bias) = conv.bias.as_mut() {
            if let Some(v) = self.read(&format!("{scope}/biases"), &[o])? {
                set(bias, v, |t| t);
            }
        }
        Ok(())
    }

    /// A fully connected layer: `<scope>/weights` `[in, out]` and its `biases` if any.
    fn dense(&mut self, linear: &mut Linear, scope: &str) -> Result<(), TfError> {
        let [i, o] = linear.weight.lazy_shape().dims::<2>();
        if let Some(v) = self.read(&format!("{scope}/weights"), &[i, o])? {
            set(&mut linear.weight, v, |t| t);
        }
        if let Some(bias) = linear.bias.as_mut() {
            if let Some(v) = self.read(&format!("{scope}/biases"), &[o])? {
                set(bias, v, |t| t);
            }
        }
        Ok(())
    }

    /// A batch norm `<scope>` (`.../BatchNorm`): beta, moving mean and variance; gamma 1
    /// unless the file has one.
    fn bn(&mut self, bn: &mut BatchNorm, scope: &str) -> Result<(), TfError> {
        let [n] = bn.beta.lazy_shape().dims::<1>();
        let gamma = format!("{scope}/gamma");
        if self.src.shape(&gamma).is_some() {
            if let Some(v) = self.read(&gamma, &[n])? {
                set(&mut bn.gamma, v, |t| t);
            }
        } else if !self.dry {
            set(&mut bn.gamma, TensorData::new(vec![1f32; n], [n]), |t| t);
        }
        if let Some(v) = self.read(&format!("{scope}/beta"), &[n])? {
            set(&mut bn.beta, v, |t| t);
        }
        let device = bn.running_mean.value().device();
        if let Some(v) = self.read(&format!("{scope}/moving_mean"), &[n])? {
            bn.running_mean = RunningState::new(Tensor::from_data(v, &device));
        }
        if let Some(v) = self.read(&format!("{scope}/moving_variance"), &[n])? {
            bn.running_var = RunningState::new(Tensor::from_data(v, &device));
        }
        Ok(())
    }

    /// conv (no bias) + `BatchNorm`.
    fn basic(&mut self, layer: &mut BasicConv2d, scope: &str) -> Result<(), TfError> {
        self.conv(&mut layer.conv, scope)?;
        self.bn(&mut layer.bn, &format!("{scope}/BatchNorm"))
    }

    fn branch(&mut self, layers: &mut [BasicConv2d], scope: &str, names: &[&str]) -> Result<(), TfError> {
        for (layer, name) in layers.iter_mut().zip(names) {
            self.basic(layer, &format!("{scope}/{name}"))?;
        }
        Ok(())
    }

    fn block35(&mut self, b: &mut Block35, s: &str) -> Result<(), TfError> {
        self.basic(&mut b.branch0, &format!("{s}/Branch_0/Conv2d_1x1"))?;
        self.branch(&mut b.branch1, s, &["Branch_1/Conv2d_0a_1x1", "Branch_1/Conv2d_0b_3x3"])?;
        self.branch(&mut b.branch2, s, &["Branch_2/Conv2d_0a_1x1", "Branch_2/Conv2d_0b_3x3", "Branch_2/Conv2d_0c_3x3"])?;
        self.conv(&mut b.conv2d, &format!("{s}/Conv2d_1x1"))
    }

    fn block17(&mut self, b: &mut Block17, s: &str) -> Result<(), TfError> {
        self.basic(&mut b.branch0, &format!("{s}/Branch_0/Conv2d_1x1"))?;
        self.branch(&mut b.branch1, s, &["Branch_1/Conv2d_0a_1x1", "Branch_1/Conv2d_0b_1x7", "Branch_1/Conv2d_0c_7x1"])?;
        self.conv(&mut b.conv2d, &format!("{s}/Conv2d_1x1"))
    }

    fn block8(&mut self, b: &mut Block8, s: &str) -> Result<(), TfError> {
        self.basic(&mut b.branch0, &format!("{s}/Branch_0/Conv2d_1x1"))?;
        self.branch(&mut b.branch1, s, &["Branch_1/Conv2d_0a_1x1", "Branch_1/Conv2d_0b_1x3", "Branch_1/Conv2d_0c_3x1"])?;
        self.conv(&mut b.conv2d, &format!("{s}/Conv2d_1x1"))
    }

    fn reduction_a(&mut self, r: &mut ReductionA, s: &str) -> Result<(), TfError> {
        self.basic(&mut r.branch0, &format!("{s}/Branch_0/Conv2d_1a_3x3"))?;
        self.branch(&mut r.branch1, s, &["Branch_1/Conv2d_0a_1x1", "Branch_1/Conv2d_0b_3x3", "Branch_1/Conv2d_1a_3x3"])
    }

    fn reduction_b(&mut self, r: &mut ReductionB, s: &str) -> Result<(), TfError> {
        self.branch(&mut r.branch0, s, &["Branch_0/Conv2d_0a_1x1", "Branch_0/Conv2d_1a_3x3"])?;
        self.branch(&mut r.branch1, s, &["Branch_1/Conv2d_0a_1x1", "Branch_1/Conv2d_1a_3x3"])?;
        self.branch(&mut r.branch2, s, &["Branch_2/Conv2d_0a_1x1", "Branch_2/Conv2d_0b_3x3", "Branch_2/Conv2d_1a_3x3"])
    }
}

/// Loads the reference's variables of `src` into `model` (built from [`infer_config`], any
/// device); the Logits layer too when `with_logits` and the model has one. Every tensor's
/// shape is checked before it is read; absent tensors are listed in one error.
pub fn load_tf_weights(model: &mut InceptionResnetV1, src: &dyn TensorSource, with_logits: bool) -> Result<(), TfError> {
    // first the names and shapes, touching no parameter: a file of another network, or whose
    // shapes claim more than it holds, costs an error, not the memory of what it describes
    let mut l = Loader { src, dry: true, missing: Vec::new(), wanted: 0 };
    walk(model, &mut l, with_logits)?;
    if l.missing.is_empty() {
        let stored = src.stored_values();
        if l.wanted > stored + MAX_FILL as u64 {
            let reason = format!("its tensors' shapes claim {} values, the file holds {stored}: truncated?", l.wanted);
            return Err(TfError::NotAModel { path: src.path().to_path_buf(), reason });
        }
        return walk(model, &mut Loader { src, dry: false, missing: Vec::new(), wanted: 0 }, with_logits);
    }
    let names = src.names();
    let held = if names.is_empty() {
        " (the file holds no float tensors)".to_string()
    } else {
        format!(" (the file holds {} tensors, e.g. {})", names.len(), names.iter().take(3).cloned().collect::<Vec<_>>().join(", "))
    };
    let shown = 8;
    let more = if l.missing.len() > shown { format!(" and {} more", l.missing.len() - shown) } else { String::new() };
    Err(TfError::Missing {
        path: src.path().to_path_buf(),
        count: l.missing.len(),
        list: l.missing.iter().take(shown).map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", "),
        more: more + &held,
    })
}

/// The reference's names and TensorFlow shapes of every tensor `model` takes (gamma left out),
/// in the loader's order.
pub fn tf_tensor_shapes(model: &mut InceptionResnetV1, with_logits: bool) -> Vec<(String, Vec<usize>)> {
    struct Empty;
    impl TensorSource for Empty {
        fn path(&self) -> &std::path::Path {
            std::path::Path::new("")
        }
        fn names(&self) -> Vec<&str> {
            Vec::new()
        }
        fn shape(&self, _: &str) -> Option<&[usize]> {
            None
        }
        fn read_f32(&self, _: &str) -> Result<Vec<f32>, TfError> {
            Ok(Vec::new())
        }
        fn stored_values(&self) -> u64 {
            0
        }
    }
    let mut l = Loader { src: &Empty, dry: true, missing: Vec::new(), wanted: 0 };
    // nothing is read from an empty source: no error can come
    let _ = walk(model, &mut l, with_logits);
    l.missing
}

fn walk(model: &mut InceptionResnetV1, l: &mut Loader<'_>, with_logits: bool) -> Result<(), TfError> {
    let stem = [
        (&mut model.conv2d_1a, "Conv2d_1a_3x3"),
        (&mut model.conv2d_2a, "Conv2d_2a_3x3"),
        (&mut model.conv2d_2b, "Conv2d_2b_3x3"),
        (&mut model.conv2d_3b, "Conv2d_3b_1x1"),
        (&mut model.conv2d_4a, "Conv2d_4a_3x3"),
        (&mut model.conv2d_4b, "Conv2d_4b_3x3"),
    ];
    for (layer, name) in stem {
        l.basic(layer, &scoped(name))?;
    }
    for (i, b) in model.repeat_1.iter_mut().enumerate() {
        l.block35(b, &scoped(&format!("Repeat/block35_{}", i + 1)))?;
    }
    l.reduction_a(&mut model.mixed_6a, &scoped("Mixed_6a"))?;
    for (i, b) in model.repeat_2.iter_mut().enumerate() {
        l.block17(b, &scoped(&format!("Repeat_1/block17_{}", i + 1)))?;
    }
    l.reduction_b(&mut model.mixed_7a, &scoped("Mixed_7a"))?;
    for (i, b) in model.repeat_3.iter_mut().enumerate() {
        l.block8(b, &scoped(&format!("Repeat_2/block8_{}", i + 1)))?;
    }
    l.block8(&mut model.block8, &scoped("Block8"))?;
    l.dense(&mut model.last_linear, &scoped("Bottleneck"))?;
    l.bn(&mut model.last_bn, &scoped("Bottleneck/BatchNorm"))?;
    if with_logits {
        if let Some(logits) = model.logits.as_mut() {
            l.dense(logits, "Logits")?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;
    use std::collections::BTreeMap;
    use std::path::{Path, PathBuf};

    /// Tensors in memory, with TensorFlow's names and layouts.
    struct Mem(PathBuf, BTreeMap<String, (Vec<usize>, Vec<f32>)>);

    impl TensorSource for Mem {
        fn path(&self) -> &Path {
            &self.0
        }
        fn names(&self) -> Vec<&str> {
            self.1.keys().map(String::as_str).collect()
        }
        fn shape(&self, name: &str) -> Option<&[usize]> {
            self.1.get(name).map(|(s, _)| s.as_slice())
        }
        fn read_f32(&self, name: &str) -> Result<Vec<f32>, TfError> {
            Ok(self.1[name].1.clone())
        }
        fn stored_values(&self) -> u64 {
            self.1.values().map(|(_, v)| v.len() as u64).sum()
        }
    }

    #[test]
    fn the_published_architectures_come_from_their_shapes() {
        // 20180408-102900 (128-d) and 20180402-114759 (512-d): the reference's widths
        for e in [128, 512] {
            let config = InceptionResnetV1Config::new().with_embedding_size(e);
            let mut model = config.init(&Device::flex());
            let wanted = tf_tensor_shapes(&mut model, false);
            assert!(wanted.iter().any(|(n, s)| n == "InceptionResnetV1/Bottleneck/weights" && s == &[1792, e]));
            assert!(wanted
                .iter()
                .any(|(n, s)| n == "InceptionResnetV1/Repeat_1/block17_10/Branch_1/Conv2d_0c_7x1/weights" && s == &[7, 1, 128, 128]));
            let src = Mem(PathBuf::from("full.index"), wanted.into_iter().map(|(n, s)| (n, (s, Vec::new()))).collect());
            let inferred = infer_config(&src).unwrap();
            assert_eq!(inferred.arch, config.arch);
            assert_eq!((inferred.embedding_size, inferred.num_classes, inferred.bn_epsilon), (e, 0, 0.001));
            // shapes claiming 23 M values of a file that holds none: refused before any read
            let e = load_tf_weights(&mut model, &src, false).unwrap_err().to_string();
            assert!(e.contains("full.index") && e.contains("the file holds 0"), "{e}");
        }
    }

    #[test]
    fn architecture_comes_from_the_shapes() {
        // a narrow network of the reference's layout, 11 Block17 (block17_10 sorts before block17_2)
        let arch = InceptionResnetV1Arch {
            stem: [2, 2, 4, 5, 12, 16],
            block35_repeats: 3,
            block35_width: 2,
            reduction_a: [12, 12, 16, 24],
            block17_repeats: 11,
            block17_width: 8,
            reduction_b: [16, 24, 16, 16, 16, 16, 16],
            block8_repeats: 2,
            block8_width: 12,
            ..InceptionResnetV1Arch::full()
        };
        let config = InceptionResnetV1Config::new().with_embedding_size(40).with_num_classes(7).with_arch(arch);
        let mut model = config.init(&Device::flex());
        let wanted = tf_tensor_shapes(&mut model, true);
        let has = |n: &str| wanted.iter().any(|(w, _)| w == n);
        assert!(has("InceptionResnetV1/Repeat_1/block17_11/Conv2d_1x1/biases") && has("Logits/biases"));
        assert!(has("InceptionResnetV1/Block8/Branch_1/Conv2d_0c_3x1/BatchNorm/moving_variance"));
        assert!(!wanted.iter().any(|(n, _)| n.ends_with("/gamma")));
        let first = &wanted[0];
        assert_eq!((first.0.as_str(), first.1.as_slice()), ("InceptionResnetV1/Conv2d_1a_3x3/weights", &[3, 3, 3, 2][..]));
        let src = Mem(
            PathBuf::from("narrow.index"),
            wanted.iter().map(|(n, s)| (n.clone(), (s.clone(), vec![0.5; s.iter().product()]))).collect(),
        );
        let inferred = infer_config(&src).unwrap();
        assert_eq!(inferred.arch, config.arch);
        assert_eq!((inferred.embedding_size, inferred.num_classes), (40, 7));
        let mut fresh = inferred.init(&Device::flex());
        load_tf_weights(&mut fresh, &src, true).unwrap();
        let g: Vec<f32> = fresh.last_bn.gamma.val().try_into_vec_as::<f32>().unwrap();
        assert!(g.iter().all(|&v| v == 1.0));
        let w: Vec<f32> = fresh.repeat_2[10].conv2d.bias.as_ref().unwrap().val().try_into_vec_as::<f32>().unwrap();
        assert!(w.iter().all(|&v| v == 0.5));
        // one tensor fewer: named in the error, with the file
        let mut less = src.1.clone();
        less.remove("InceptionResnetV1/Repeat/block35_2/Branch_2/Conv2d_0c_3x3/BatchNorm/moving_variance");
        let e = load_tf_weights(&mut fresh, &Mem(PathBuf::from("narrow.index"), less), true).unwrap_err().to_string();
        assert!(e.contains("narrow.index") && e.contains("1 of its tensors"), "{e}");
        assert!(e.contains("block35_2/Branch_2/Conv2d_0c_3x3/BatchNorm/moving_variance"), "{e}");
        // a wrong shape names the tensor
        let mut wrong = src.1.clone();
        wrong.get_mut("InceptionResnetV1/Bottleneck/BatchNorm/beta").unwrap().0 = vec![41];
        let e = load_tf_weights(&mut fresh, &Mem(PathBuf::from("narrow.index"), wrong), true).unwrap_err().to_string();
        assert!(e.contains("Bottleneck/BatchNorm/beta") && e.contains("[41]"), "{e}");
        // another network: nothing of ours, the file's names shown
        let other = Mem(
            PathBuf::from("v2.index"),
            [("InceptionResnetV2/Conv2d_1a_3x3/weights".to_string(), (vec![3, 3, 3, 32], vec![0.0; 864]))].into(),
        );
        let mut full = infer_config(&other).unwrap().init(&Device::flex());
        let e = load_tf_weights(&mut full, &other, false).unwrap_err().to_string();
        assert!(
            e.contains("InceptionResnetV1/Conv2d_1a_3x3/weights")
                && e.contains("more")
                && e.contains("InceptionResnetV2/Conv2d_1a_3x3/weights"),
            "{e}"
        );
    }
}
