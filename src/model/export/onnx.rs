//! The network as an ONNX graph (opset 13): `input` `[batch, 3, size, size]` float, NCHW,
//! already standardised (how: the model's metadata), `embeddings` `[batch, embedding_size]`,
//! L2-normalised, the batch dimension dynamic.
//!
//! The graph is the network's inference forward pass, layer by layer:
//!
//! | layer | ONNX |
//! |---|---|
//! | conv + BN + ReLU | `Conv` (BN folded in: weight and bias) + `Relu` |
//! | residual `ReLU(x + scale * up)` | `Conv` (up projection, with bias), `Mul` by the scale, `Add`, `Relu` |
//! | branch outputs | `Concat` on channels |
//! | max pools | `MaxPool` |
//! | global average pool | `GlobalAveragePool` + `Flatten` |
//! | bottleneck + its BN | `Gemm` (BN folded in) |
//! | L2 normalisation | `ReduceL2` + `Max(., 1e-5)` + `Div`, i.e. `x / sqrt(max(sum(x^2), 1e-10))` as ours |
//!
//! `SAME` padding is `auto_pad = SAME_UPPER` (the extra row/column at the end, as burn pads);
//! dropout is absent (inference).

use burn::nn::conv::Conv2d;
use burn::nn::pool::MaxPool2d;
use burn::nn::PaddingConfig2d;
use burn::tensor::Tensor;
use prost::Message;

use super::onnx_proto::*;
use super::ExportError;
use crate::model::blocks::{BasicConv2d, Block17, Block35, Block8, ReductionA, ReductionB};
use crate::model::load::ModelMeta;
use crate::model::InceptionResnetV1;

/// The opset the graph is written for.
pub const OPSET: i64 = 13;
/// ONNX IR version of opset 13 (ONNX 1.8).
pub const IR_VERSION: i64 = 7;
/// Name of the graph input.
pub const INPUT: &str = "input";
/// Name of the graph output.
pub const OUTPUT: &str = "embeddings";

/// Builds the graph's nodes and initialisers.
struct Graph {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
}

fn attr_int(name: &str, v: i64) -> AttributeProto {
    AttributeProto { name: name.into(), i: v, r#type: AttributeType::Int as i32, ..Default::default() }
}

fn attr_ints(name: &str, v: &[usize]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        ints: v.iter().map(|&x| x as i64).collect(),
        r#type: AttributeType::Ints as i32,
        ..Default::default()
    }
}

fn attr_str(name: &str, v: &str) -> AttributeProto {
    AttributeProto { name: name.into(), s: v.as_bytes().to_vec(), r#type: AttributeType::String as i32, ..Default::default() }
}

fn values<const D: usize>(t: Tensor<D>, name: &str) -> Result<Vec<f32>, ExportError> {
    t.to_data().try_into_vec_as::<f32>().map_err(|e| ExportError::Tensor { name: name.into(), reason: format!("{e:?}") })
}

/// The padding attributes of a layer: `auto_pad` for `Same`, `pads` otherwise.
fn padding_attrs(padding: &PaddingConfig2d) -> AttributeProto {
    match padding {
        PaddingConfig2d::Same => attr_str("auto_pad", "SAME_UPPER"),
        PaddingConfig2d::Valid => attr_ints("pads", &[0, 0, 0, 0]),
        // burn: (top, left, bottom, right); ONNX: [top, left, bottom, right]
        PaddingConfig2d::Explicit(t, l, b, r) => attr_ints("pads", &[*t, *l, *b, *r]),
    }
}

impl Graph {
    fn node(&mut self, op: &str, name: &str, inputs: &[&str], attrs: Vec<AttributeProto>) -> String {
        let out = format!("{name}.out");
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![out.clone()],
            name: name.into(),
            op_type: op.into(),
            attribute: attrs,
        });
        out
    }

    fn init(&mut self, name: &str, dims: &[usize], v: &[f32]) -> String {
        self.initializers.push(TensorProto {
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: FLOAT,
            name: name.into(),
            raw_data: v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        });
        name.to_string()
    }

    fn init_tensor<const D: usize>(&mut self, name: &str, t: Tensor<D>) -> Result<String, ExportError> {
        let dims = t.dims();
        let v = values(t, name)?;
        Ok(self.init(name, &dims, &v))
    }

    /// A convolution (with its bias when it has one).
    fn conv(&mut self, name: &str, x: &str, conv: &Conv2d) -> Result<String, ExportError> {
        let w = self.init_tensor(&format!("{name}.weight"), conv.weight.val())?;
        let mut inputs = vec![x.to_string(), w];
        if let Some(b) = &conv.bias {
            inputs.push(self.init_tensor(&format!("{name}.bias"), b.val())?);
        }
        let [_, _, kh, kw] = conv.weight.dims();
        let attrs = vec![
            attr_ints("kernel_shape", &[kh, kw]),
            attr_ints("strides", &conv.stride),
            attr_ints("dilations", &conv.dilation),
            attr_int("group", conv.groups as i64),
            padding_attrs(&conv.padding),
        ];
        let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        Ok(self.node("Conv", name, &refs, attrs))
    }

    /// conv + (folded) BN + ReLU.
    fn basic(&mut self, name: &str, x: &str, layer: &BasicConv2d) -> Result<String, ExportError> {
        if !layer.folded {
            return Err(ExportError::Unfolded(name.into()));
        }
        let y = self.conv(&format!("{name}.conv"), x, &layer.conv)?;
        Ok(self.node("Relu", &format!("{name}.relu"), &[&y], vec![]))
    }

    fn chain(&mut self, name: &str, x: &str, chain: &[BasicConv2d]) -> Result<String, ExportError> {
        let mut h = x.to_string();
        for (i, layer) in chain.iter().enumerate() {
            h = self.basic(&format!("{name}.{i}"), &h, layer)?;
        }
        Ok(h)
    }

    fn max_pool(&mut self, name: &str, x: &str, pool: &MaxPool2d) -> String {
        let attrs = vec![
            attr_ints("kernel_shape", &pool.kernel_size),
            attr_ints("strides", &pool.stride),
            attr_ints("dilations", &pool.dilation),
            attr_int("ceil_mode", pool.ceil_mode as i64),
            padding_attrs(&pool.padding),
        ];
        self.node("MaxPool", name, &[x], attrs)
    }

    fn concat(&mut self, name: &str, parts: &[String]) -> String {
        let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
        self.node("Concat", name, &refs, vec![attr_int("axis", 1)])
    }

    /// `x + scale * up`, then ReLU when `activation`.
    fn residual(&mut self, name: &str, x: &str, up: &str, scale: f64, activation: bool) -> String {
        let s = self.init(&format!("{name}.scale"), &[], &[scale as f32]);
        let scaled = self.node("Mul", &format!("{name}.mul"), &[up, &s], vec![]);
        let sum = self.node("Add", &format!("{name}.add"), &[x, &scaled], vec![]);
        if activation {
            self.node("Relu", &format!("{name}.relu"), &[&sum], vec![])
        } else {
            sum
        }
    }

    fn block35(&mut self, name: &str, x: &str, b: &Block35) -> Result<String, ExportError> {
        let x0 = self.basic(&format!("{name}.branch0"), x, &b.branch0)?;
        let x1 = self.chain(&format!("{name}.branch1"), x, &b.branch1)?;
        let x2 = self.chain(&format!("{name}.branch2"), x, &b.branch2)?;
        let cat = self.concat(&format!("{name}.concat"), &[x0, x1, x2]);
        let up = self.conv(&format!("{name}.conv2d"), &cat, &b.conv2d)?;
        Ok(self.residual(name, x, &up, b.scale, b.activation))
    }

    /// Block17 and Block8 have the same shape: two branches, up projection, residual.
    fn block_two_branches(
        &mut self,
        name: &str,
        x: &str,
        parts: (&BasicConv2d, &[BasicConv2d], &Conv2d),
        scale: f64,
        activation: bool,
    ) -> Result<String, ExportError> {
        let (branch0, branch1, conv2d) = parts;
        let x0 = self.basic(&format!("{name}.branch0"), x, branch0)?;
        let x1 = self.chain(&format!("{name}.branch1"), x, branch1)?;
        let cat = self.concat(&format!("{name}.concat"), &[x0, x1]);
        let up = self.conv(&format!("{name}.conv2d"), &cat, conv2d)?;
        Ok(self.residual(name, x, &up, scale, activation))
    }

    fn block17(&mut self, name: &str, x: &str, b: &Block17) -> Result<String, ExportError> {
        self.block_two_branches(name, x, (&b.branch0, &b.branch1, &b.conv2d), b.scale, b.activation)
    }

    fn block8(&mut self, name: &str, x: &str, b: &Block8) -> Result<String, ExportError> {
        self.block_two_branches(name, x, (&b.branch0, &b.branch1, &b.conv2d), b.scale, b.activation)
    }

    fn reduction_a(&mut self, name: &str, x: &str, r: &ReductionA) -> Result<String, ExportError> {
        let x0 = self.basic(&format!("{name}.branch0"), x, &r.branch0)?;
        let x1 = self.chain(&format!("{name}.branch1"), x, &r.branch1)?;
        let x2 = self.max_pool(&format!("{name}.branch2"), x, &r.branch2);
        Ok(self.concat(&format!("{name}.concat"), &[x0, x1, x2]))
    }

    fn reduction_b(&mut self, name: &str, x: &str, r: &ReductionB) -> Result<String, ExportError> {
        let x0 = self.chain(&format!("{name}.branch0"), x, &r.branch0)?;
        let x1 = self.chain(&format!("{name}.branch1"), x, &r.branch1)?;
        let x2 = self.chain(&format!("{name}.branch2"), x, &r.branch2)?;
        let x3 = self.max_pool(&format!("{name}.branch3"), x, &r.branch3);
        Ok(self.concat(&format!("{name}.concat"), &[x0, x1, x2, x3]))
    }

    /// Global average pool, the bottleneck with its batch norm folded in (`Gemm`), and the
    /// L2 normalisation.
    fn head(&mut self, x: &str, m: &InceptionResnetV1) -> Result<String, ExportError> {
        let pooled = self.node("GlobalAveragePool", "avgpool_1a", &[x], vec![]);
        let flat = self.node("Flatten", "flatten", &[&pooled], vec![attr_int("axis", 1)]);
        // prelogits = BN(x W) = x (W s) + (beta - mean s), s = gamma / sqrt(var + eps)
        let bn = &m.last_bn;
        let w = values(m.last_linear.weight.val(), "last_linear.weight")?;
        let [d_in, d_out] = m.last_linear.weight.dims();
        let gamma = values(bn.gamma.val(), "last_bn.gamma")?;
        let beta = values(bn.beta.val(), "last_bn.beta")?;
        let mean = values(bn.running_mean.value(), "last_bn.running_mean")?;
        let var = values(bn.running_var.value(), "last_bn.running_var")?;
        let mut bias0 =
            m.last_linear.bias.as_ref().map(|b| values(b.val(), "last_linear.bias")).transpose()?.unwrap_or_else(|| vec![0.0; d_out]);
        let scale: Vec<f32> = (0..d_out).map(|j| (gamma[j] as f64 / (var[j] as f64 + bn.epsilon).sqrt()) as f32).collect();
        let w_folded: Vec<f32> = w.iter().enumerate().map(|(i, v)| v * scale[i % d_out]).collect();
        for j in 0..d_out {
            bias0[j] = beta[j] + (bias0[j] - mean[j]) * scale[j];
        }
        let wn = self.init("last_linear.weight_folded", &[d_in, d_out], &w_folded);
        let bn_ = self.init("last_linear.bias_folded", &[d_out], &bias0);
        let prelogits = self.node("Gemm", "last_linear", &[&flat, &wn, &bn_], vec![]);
        let norm = self.node("ReduceL2", "l2_norm", &[&prelogits], vec![attr_ints("axes", &[1]), attr_int("keepdims", 1)]);
        let eps = self.init("l2_norm.eps", &[], &[1e-5]);
        let clamped = self.node("Max", "l2_norm.clamp", &[&norm, &eps], vec![]);
        self.nodes.push(NodeProto {
            input: vec![prelogits, clamped],
            output: vec![OUTPUT.into()],
            name: "l2_normalize".into(),
            op_type: "Div".into(),
            attribute: vec![],
        });
        Ok(OUTPUT.into())
    }
}

fn float_input(name: &str, dims: &[Option<usize>], doc: &str) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                Some(v) => DimensionValue::DimValue(*v as i64),
                None => DimensionValue::DimParam("batch".into()),
            }),
        })
        .collect();
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto { tensor_type: Some(TypeProtoTensor { elem_type: FLOAT, shape: Some(TensorShapeProto { dim }) }) }),
        doc_string: doc.into(),
    }
}

/// The standardisation an input needs, in words (graph doc string and metadata).
pub fn standardization_text(meta: &ModelMeta) -> &'static str {
    use crate::data::preprocess::Standardization;
    match meta.standardization {
        Standardization::Fixed => "fixed: (x - 127.5) / 128 per RGB value in 0..255",
        Standardization::PerImage => {
            "per_image: (x - mean) / max(std, 1/sqrt(3*H*W)) over all values of the image (TensorFlow's per_image_standardization)"
        }
    }
}

/// The ONNX model of `model` (batch norms folded or not: they are folded here) as bytes.
pub fn onnx_bytes(model: InceptionResnetV1, meta: &ModelMeta) -> Result<Vec<u8>, ExportError> {
    let m = model.fold_batch_norm();
    let mut g = Graph { nodes: Vec::new(), initializers: Vec::new() };
    let mut x = g.basic("conv2d_1a", INPUT, &m.conv2d_1a)?;
    x = g.basic("conv2d_2a", &x, &m.conv2d_2a)?;
    x = g.basic("conv2d_2b", &x, &m.conv2d_2b)?;
    x = g.max_pool("maxpool_3a", &x, &m.maxpool_3a);
    x = g.basic("conv2d_3b", &x, &m.conv2d_3b)?;
    x = g.basic("conv2d_4a", &x, &m.conv2d_4a)?;
    x = g.basic("conv2d_4b", &x, &m.conv2d_4b)?;
    for (i, b) in m.repeat_1.iter().enumerate() {
        x = g.block35(&format!("repeat_1.{i}"), &x, b)?;
    }
    x = g.reduction_a("mixed_6a", &x, &m.mixed_6a)?;
    for (i, b) in m.repeat_2.iter().enumerate() {
        x = g.block17(&format!("repeat_2.{i}"), &x, b)?;
    }
    x = g.reduction_b("mixed_7a", &x, &m.mixed_7a)?;
    for (i, b) in m.repeat_3.iter().enumerate() {
        x = g.block8(&format!("repeat_3.{i}"), &x, b)?;
    }
    x = g.block8("block8", &x, &m.block8)?;
    g.head(&x, &m)?;

    let size = meta.image_size as usize;
    let standardization = standardization_text(meta);
    let doc = format!(
        "facenet {} embeddings ({}-d, L2-normalised). Input: RGB images {size}x{size}, NCHW float, standardised as {standardization}.",
        meta.model_def, meta.embedding_size
    );
    let graph = GraphProto {
        node: g.nodes,
        name: meta.model_def.clone(),
        initializer: g.initializers,
        doc_string: doc.clone(),
        input: vec![float_input(INPUT, &[None, Some(3), Some(size), Some(size)], &format!("RGB, NCHW, standardised: {standardization}"))],
        output: vec![float_input(OUTPUT, &[None, Some(meta.embedding_size)], "L2-normalised embeddings")],
    };
    let std_name = match meta.standardization {
        crate::data::preprocess::Standardization::Fixed => "fixed",
        crate::data::preprocess::Standardization::PerImage => "per_image",
    };
    let props = [
        ("model_def", meta.model_def.clone()),
        ("embedding_size", meta.embedding_size.to_string()),
        ("image_size", meta.image_size.to_string()),
        ("input_layout", "NCHW, RGB".to_string()),
        ("standardization", std_name.to_string()),
        ("standardization_formula", standardization.to_string()),
        ("output", "L2-normalised embedding".to_string()),
    ];
    let model = ModelProto {
        ir_version: IR_VERSION,
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: OPSET }],
        producer_name: "facenet".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        domain: String::new(),
        model_version: 1,
        doc_string: doc,
        graph: Some(graph),
        metadata_props: props.into_iter().map(|(k, v)| StringStringEntryProto { key: format!("facenet.{k}"), value: v }).collect(),
    };
    Ok(model.encode_to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::preprocess::Standardization;
    use crate::model::InceptionResnetV1Config;
    use burn::module::Module;
    use burn::tensor::Device;

    #[test]
    fn graph_has_the_expected_operators_and_metadata() {
        let model = InceptionResnetV1Config::small(16, 1.0, 0).init(&Device::flex()).valid();
        let meta = ModelMeta {
            model_def: "inception_resnet_v1_small".into(),
            embedding_size: 16,
            image_size: 32,
            standardization: Standardization::PerImage,
            num_classes: 0,
        };
        let bytes = onnx_bytes(model, &meta).unwrap();
        let m = ModelProto::decode(bytes.as_slice()).unwrap();
        assert_eq!(m.opset_import[0].version, OPSET);
        let g = m.graph.unwrap();
        let count = |op: &str| g.node.iter().filter(|n| n.op_type == op).count();
        assert!(count("Conv") > 20 && count("Relu") > 20);
        assert_eq!(count("BatchNormalization"), 0, "batch norms are folded");
        for op in ["MaxPool", "GlobalAveragePool", "Gemm", "ReduceL2", "Div", "Mul", "Add", "Concat"] {
            assert!(count(op) > 0, "{op}");
        }
        // every node input is the graph input, an initializer or an earlier node's output
        let mut known: std::collections::HashSet<String> = g.initializer.iter().map(|t| t.name.clone()).collect();
        known.insert(INPUT.into());
        for n in &g.node {
            for i in &n.input {
                assert!(known.contains(i), "{} reads unknown {i}", n.name);
            }
            known.extend(n.output.iter().cloned());
        }
        assert!(known.contains(OUTPUT));
        assert_eq!(
            g.input[0].r#type.as_ref().unwrap().tensor_type.as_ref().unwrap().shape.as_ref().unwrap().dim[0].value,
            Some(DimensionValue::DimParam("batch".into()))
        );
        let prop = |k: &str| m.metadata_props.iter().find(|p| p.key == k).map(|p| p.value.clone());
        assert_eq!(prop("facenet.standardization").as_deref(), Some("per_image"));
        assert!(m.doc_string.contains("per_image_standardization"), "{}", m.doc_string);
    }
}
