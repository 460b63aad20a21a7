//! A facenet-pytorch `InceptionResnetV1` state dict, as `torch.save(model.state_dict(), f)`
//! writes it, so that `InceptionResnetV1(...).load_state_dict(torch.load(f))` takes our
//! weights.
//!
//! Names and layouts: our field names are facenet-pytorch's; burn's own
//! `BurnToPyTorchAdapter` renames batch-norm `gamma`/`beta` to `weight`/`bias` and transposes
//! Linear weights to `[out, in]`. Each batch norm also gets the `num_batches_tracked` buffer
//! (int64 scalar, 0) that PyTorch's `BatchNorm` has and a strict `load_state_dict` expects.
//!
//! The file (PyTorch >= 1.6 zip serialisation): `archive/data.pkl`, a pickle (protocol 2) of
//! an `OrderedDict` name -> `torch._utils._rebuild_tensor_v2(storage, 0, size, stride, False,
//! OrderedDict())`, each storage a persistent id `('storage', torch.FloatStorage, key,
//! 'cpu', numel)` whose bytes are the zip entry `archive/data/<key>`; plus
//! `archive/byteorder` and `archive/version`. Entries are stored uncompressed and aligned to
//! 64 bytes as torch does (so `torch.load(..., mmap=True)` works too).
//!
//! Hand-written because neither burn (its `PytorchStore` reads only) nor another maintained
//! Rust crate writes PyTorch files; the pickle is a short list of opcodes (the subset of
//! `torch.load`'s `weights_only` unpickler that `torch.save` itself emits for a state dict).

use std::io::{Cursor, Write};

use burn::store::{bridge, BurnToPyTorchAdapter, ModuleSnapshot};
use burn::tensor::DType;

use super::ExportError;
use crate::model::InceptionResnetV1;

/// One state-dict entry.
pub struct StateEntry {
    /// facenet-pytorch key (`conv2d_1a.conv.weight`, `last_bn.running_var`, ...).
    pub name: String,
    /// Shape (empty for a scalar).
    pub shape: Vec<usize>,
    /// Values.
    pub data: StateData,
}

/// Values of a state-dict entry.
pub enum StateData {
    F32(Vec<f32>),
    I64(Vec<i64>),
}

/// The facenet-pytorch state dict of `model` (batch norms not folded; Logits layer included
/// when the model has one).
pub fn state_dict(model: &InceptionResnetV1) -> Result<Vec<StateEntry>, ExportError> {
    if model.conv2d_1a.folded {
        return Err(ExportError::Folded);
    }
    let mut out = Vec::new();
    for t in model.collect(None, Some(Box::new(BurnToPyTorchAdapter)), false) {
        let name = t.name.clone();
        if !matches!(t.dtype, DType::F32 | DType::F64 | DType::F16 | DType::BF16) {
            continue; // flags and the like: not weights
        }
        let shape = t.shape.to_vec();
        let data = bridge::to_data(&t).map_err(|e| ExportError::Tensor { name: name.clone(), reason: format!("{e:?}") })?;
        let values = data.try_into_vec_as::<f32>().map_err(|e| ExportError::Tensor { name: name.clone(), reason: format!("{e:?}") })?;
        let tracked = name.strip_suffix(".running_var").map(|p| format!("{p}.num_batches_tracked"));
        out.push(StateEntry { name, shape, data: StateData::F32(values) });
        if let Some(n) = tracked {
            out.push(StateEntry { name: n, shape: vec![], data: StateData::I64(vec![0]) });
        }
    }
    Ok(out)
}

/// Pickle opcodes (protocol 2) used here.
struct Pickle(Vec<u8>);

impl Pickle {
    fn string(&mut self, s: &str) {
        self.0.push(b'X'); // BINUNICODE
        self.0.extend_from_slice(&(s.len() as u32).to_le_bytes());
        self.0.extend_from_slice(s.as_bytes());
    }

    fn int(&mut self, v: usize) {
        if let Ok(v) = i32::try_from(v) {
            self.0.push(b'J'); // BININT
            self.0.extend_from_slice(&v.to_le_bytes());
        } else {
            self.0.extend_from_slice(&[0x8a, 8]); // LONG1, 8 bytes
            self.0.extend_from_slice(&(v as u64).to_le_bytes());
        }
    }

    fn tuple(&mut self, v: &[usize]) {
        self.0.push(b'('); // MARK
        v.iter().for_each(|&x| self.int(x));
        self.0.push(b't'); // TUPLE
    }

    fn global(&mut self, module: &str, name: &str) {
        self.0.push(b'c'); // GLOBAL
        self.0.extend_from_slice(format!("{module}\n{name}\n").as_bytes());
    }

    fn empty_ordered_dict(&mut self) {
        self.global("collections", "OrderedDict");
        self.0.extend_from_slice(b")R"); // EMPTY_TUPLE, REDUCE
    }
}

/// Row-major strides of `shape`.
fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1usize; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// `entries` as the bytes of a PyTorch `.pt` file.
pub fn pt_bytes(entries: &[StateEntry]) -> Result<Vec<u8>, ExportError> {
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let opt =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored).with_alignment(64).large_file(false);
    let io = |e: zip::result::ZipError| ExportError::Io(std::io::Error::other(e));
    let mut p = Pickle(vec![0x80, 2]); // PROTO 2
    p.empty_ordered_dict();
    p.0.push(b'('); // MARK: the (key, value) pairs, set with SETITEMS
    for (key, e) in entries.iter().enumerate() {
        let (storage, bytes): (&str, Vec<u8>) = match &e.data {
            StateData::F32(v) => ("FloatStorage", v.iter().flat_map(|x| x.to_le_bytes()).collect()),
            StateData::I64(v) => ("LongStorage", v.iter().flat_map(|x| x.to_le_bytes()).collect()),
        };
        let numel = match &e.data {
            StateData::F32(v) => v.len(),
            StateData::I64(v) => v.len(),
        };
        if numel != e.shape.iter().product::<usize>() {
            return Err(ExportError::Tensor { name: e.name.clone(), reason: format!("{numel} values for shape {:?}", e.shape) });
        }
        p.string(&e.name);
        p.global("torch._utils", "_rebuild_tensor_v2");
        p.0.push(b'('); // MARK: the arguments
        p.0.push(b'('); // MARK: the persistent id
        p.string("storage");
        p.global("torch", storage);
        p.string(&key.to_string());
        p.string("cpu");
        p.int(numel);
        p.0.extend_from_slice(b"tQ"); // TUPLE, BINPERSID
        p.int(0); // storage offset
        p.tuple(&e.shape);
        p.tuple(&strides(&e.shape));
        p.0.push(0x89); // NEWFALSE: requires_grad
        p.empty_ordered_dict(); // backward hooks
        p.0.extend_from_slice(b"tR"); // TUPLE, REDUCE
        zip.start_file(format!("archive/data/{key}"), opt).map_err(io)?;
        zip.write_all(&bytes)?;
    }
    p.0.extend_from_slice(b"u."); // SETITEMS, STOP
    zip.start_file("archive/data.pkl", opt).map_err(io)?;
    zip.write_all(&p.0)?;
    zip.start_file("archive/byteorder", opt).map_err(io)?;
    zip.write_all(b"little")?;
    zip.start_file("archive/version", opt).map_err(io)?;
    zip.write_all(b"3\n")?;
    Ok(zip.finish().map_err(io)?.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::InceptionResnetV1Config;
    use burn::module::Module;
    use burn::tensor::Device;

    #[test]
    fn state_dict_has_pytorch_names_and_layouts() {
        let model = InceptionResnetV1Config::small(16, 1.0, 0).init(&Device::flex()).valid();
        let sd = state_dict(&model).unwrap();
        let get = |n: &str| sd.iter().find(|e| e.name == n).unwrap_or_else(|| panic!("{n} missing"));
        assert_eq!(get("conv2d_1a.bn.weight").shape.len(), 1);
        assert!(matches!(get("conv2d_1a.bn.num_batches_tracked").data, StateData::I64(_)));
        assert!(get("conv2d_1a.bn.num_batches_tracked").shape.is_empty());
        let [d_in, d_out] = model.last_linear.weight.dims();
        assert_eq!(get("last_linear.weight").shape, vec![d_out, d_in]);
        assert!(sd.iter().all(|e| !e.name.contains("gamma") && !e.name.contains("beta") && !e.name.contains("training")));
        // a valid zip with the pickle and one entry per tensor
        let bytes = pt_bytes(&sd).unwrap();
        let zip = zip::ZipArchive::new(Cursor::new(bytes)).unwrap();
        assert_eq!(zip.len(), sd.len() + 3);
        assert_eq!(strides(&[2, 3, 4]), vec![12, 4, 1]);
        assert!(strides(&[]).is_empty());
    }
}
