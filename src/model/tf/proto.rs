//! The few TensorFlow protobuf messages the readers need, as `prost` derive structs (field
//! numbers from TensorFlow's `tensor_bundle.proto`, `tensor_shape.proto`, `tensor.proto`,
//! `graph.proto`, `node_def.proto`, `attr_value.proto`). Only the fields read are declared:
//! protobuf decoding skips the others (an `AttrValue` is a `oneof`; its variants other than
//! `type` and `tensor` are skipped the same way).
//!
//! Why prost and not `tract-tensorflow` (which parses GraphDefs too): the messages needed are
//! six small structs, and a clean release build of `tract-tensorflow` 0.23 alone took 964 s
//! wall / 517 s CPU on the 2-core CI machine (busy with other builds), `prost` with its derive
//! 19 s / 6 s.

use std::collections::HashMap;

/// `DT_FLOAT` of TensorFlow's `DataType` enum.
pub const DT_FLOAT: i32 = 1;

/// `tensorflow.TensorShapeProto`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorShapeProto {
    #[prost(message, repeated, tag = "2")]
    pub dim: Vec<Dim>,
    #[prost(bool, tag = "3")]
    pub unknown_rank: bool,
}

/// `tensorflow.TensorShapeProto.Dim`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Dim {
    #[prost(int64, tag = "1")]
    pub size: i64,
}

impl TensorShapeProto {
    /// The dimensions, or why they are not a known shape (unknown rank, negative size).
    pub fn dims(&self) -> Result<Vec<usize>, String> {
        if self.unknown_rank {
            return Err("unknown rank".into());
        }
        self.dim.iter().map(|d| usize::try_from(d.size).map_err(|_| format!("dimension {}", d.size))).collect()
    }
}

/// `tensorflow.BundleHeaderProto`: the value of the empty key of a checkpoint's index.
#[derive(Clone, PartialEq, prost::Message)]
pub struct BundleHeaderProto {
    #[prost(int32, tag = "1")]
    pub num_shards: i32,
    /// 0 = little endian, 1 = big endian.
    #[prost(int32, tag = "2")]
    pub endianness: i32,
}

/// `tensorflow.BundleEntryProto`: where one tensor of a checkpoint lies.
#[derive(Clone, PartialEq, prost::Message)]
pub struct BundleEntryProto {
    #[prost(int32, tag = "1")]
    pub dtype: i32,
    #[prost(message, optional, tag = "2")]
    pub shape: Option<TensorShapeProto>,
    #[prost(int32, tag = "3")]
    pub shard_id: i32,
    #[prost(int64, tag = "4")]
    pub offset: i64,
    #[prost(int64, tag = "5")]
    pub size: i64,
    /// Masked CRC-32C of the tensor's bytes.
    #[prost(fixed32, tag = "6")]
    pub crc32c: u32,
    /// Partitioned variables (`TensorSliceProto`s); only their count is looked at.
    #[prost(bytes = "vec", repeated, tag = "7")]
    pub slices: Vec<Vec<u8>>,
}

/// `tensorflow.GraphDef`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct GraphDef {
    #[prost(message, repeated, tag = "1")]
    pub node: Vec<NodeDef>,
}

/// `tensorflow.NodeDef`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NodeDef {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub op: String,
    #[prost(map = "string, message", tag = "5")]
    pub attr: HashMap<String, AttrValue>,
}

/// `tensorflow.AttrValue` (its `type` and `tensor` variants).
#[derive(Clone, PartialEq, prost::Message)]
pub struct AttrValue {
    #[prost(int32, optional, tag = "6")]
    pub r#type: Option<i32>,
    #[prost(message, optional, tag = "8")]
    pub tensor: Option<TensorProto>,
}

/// `tensorflow.TensorProto` (float contents).
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorProto {
    #[prost(int32, tag = "1")]
    pub dtype: i32,
    #[prost(message, optional, tag = "2")]
    pub tensor_shape: Option<TensorShapeProto>,
    /// The values as raw little-endian bytes (how freezing stores every non-scalar constant).
    #[prost(bytes = "vec", tag = "4")]
    pub tensor_content: Vec<u8>,
    /// The values one by one; fewer than the shape's count repeat the last one.
    #[prost(float, repeated, tag = "5")]
    pub float_val: Vec<f32>,
}
