//! TensorFlow checkpoints ("tensor bundles", the V2 format of `tf.train.Saver`):
//!
//! ```text
//! <prefix>.index                    a table (table.rs): "" -> BundleHeaderProto,
//!                                   variable name -> BundleEntryProto (dtype, shape, shard,
//!                                   offset, size, masked CRC-32C of the bytes)
//! <prefix>.data-00000-of-00001      the shards: raw little-endian tensors
//! ```
//!
//! The index is read whole (it is small); a tensor's bytes are read from its shard when asked
//! for, and checked against the CRC the index holds.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use prost::Message;

use super::proto::{BundleEntryProto, BundleHeaderProto, DT_FLOAT};
use super::table::{mask_crc, read_table};
use super::{TensorSource, TfError};

/// One checkpoint: its index, and where its shards are.
#[derive(Debug)]
pub struct Bundle {
    index: PathBuf,
    prefix: PathBuf,
    num_shards: usize,
    entries: BTreeMap<String, (Vec<usize>, BundleEntryProto)>,
}

impl Bundle {
    /// Reads the index of the checkpoint `prefix` (`<prefix>.index`).
    pub fn open(prefix: &Path) -> Result<Bundle, TfError> {
        let index = with_suffix(prefix, ".index");
        let bytes = std::fs::read(&index).map_err(|e| TfError::io(&index, e))?;
        let bad = |reason: String| TfError::Format { path: index.clone(), what: "TensorFlow checkpoint index", reason };
        let table = read_table(&bytes).map_err(bad)?;
        let mut entries = BTreeMap::new();
        let mut header = None;
        for (key, value) in table {
            if key.is_empty() {
                header = Some(BundleHeaderProto::decode(value.as_slice()).map_err(|e| bad(format!("header: {e}")))?);
                continue;
            }
            let name = String::from_utf8_lossy(&key).into_owned();
            let entry = BundleEntryProto::decode(value.as_slice()).map_err(|e| bad(format!("entry {name}: {e}")))?;
            let shape = entry.shape.as_ref().map_or(Ok(Vec::new()), |s| s.dims()).map_err(|e| bad(format!("entry {name}: shape: {e}")))?;
            entries.insert(name, (shape, entry));
        }
        let header = header.ok_or_else(|| bad("no bundle header (the empty key)".into()))?;
        if header.endianness != 0 {
            return Err(bad("written big-endian; only little-endian checkpoints are read".into()));
        }
        let num_shards = usize::try_from(header.num_shards).ok().filter(|&n| (1..=100_000).contains(&n));
        let num_shards = num_shards.ok_or_else(|| bad(format!("{} shards", header.num_shards)))?;
        Ok(Bundle { index, prefix: prefix.to_path_buf(), num_shards, entries })
    }

    /// The file of shard `id`.
    pub fn shard_path(&self, id: usize) -> PathBuf {
        with_suffix(&self.prefix, &format!(".data-{id:05}-of-{:05}", self.num_shards))
    }
}

/// `path` with `suffix` appended to its file name (`model.ckpt-275` + `.index`).
pub fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

impl TensorSource for Bundle {
    fn path(&self) -> &Path {
        &self.index
    }

    fn stored_values(&self) -> u64 {
        (0..self.num_shards).map(|s| std::fs::metadata(self.shard_path(s)).map_or(0, |m| m.len()) / 4).sum()
    }

    fn names(&self) -> Vec<&str> {
        self.entries.keys().map(String::as_str).collect()
    }

    fn shape(&self, name: &str) -> Option<&[usize]> {
        self.entries.get(name).map(|(s, _)| s.as_slice())
    }

    fn read_f32(&self, name: &str) -> Result<Vec<f32>, TfError> {
        let (shape, e) = self.entries.get(name).ok_or_else(|| self.tensor_error(name, "not in the checkpoint".into()))?;
        if e.dtype != DT_FLOAT {
            return Err(self.tensor_error(name, format!("data type {} (expected float32, 1)", e.dtype)));
        }
        if !e.slices.is_empty() {
            return Err(self.tensor_error(name, "a partitioned variable (slices), not read".into()));
        }
        let count = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        let bytes = count.and_then(|c| c.checked_mul(4)).filter(|&b| b as u64 == e.size as u64);
        let len = bytes.ok_or_else(|| self.tensor_error(name, format!("{} bytes for shape {shape:?}", e.size)))?;
        let shard = usize::try_from(e.shard_id).ok().filter(|&s| s < self.num_shards);
        let shard = shard.ok_or_else(|| self.tensor_error(name, format!("shard {} of {}", e.shard_id, self.num_shards)))?;
        let path = self.shard_path(shard);
        let shard_error = |reason: String| TfError::Tensor { path: path.clone(), name: name.to_string(), reason };
        let mut f = File::open(&path).map_err(|err| TfError::io(&path, err))?;
        let file_len = f.metadata().map_err(|err| TfError::io(&path, err))?.len();
        let offset = u64::try_from(e.offset).map_err(|_| shard_error(format!("offset {}", e.offset)))?;
        if offset.checked_add(len as u64).is_none_or(|end| end > file_len) {
            return Err(shard_error(format!(
                "bytes {offset}..{} lie past the end of the file ({file_len} bytes): truncated",
                offset.saturating_add(len as u64)
            )));
        }
        let mut buf = vec![0u8; len];
        f.seek(SeekFrom::Start(offset)).and_then(|_| f.read_exact(&mut buf)).map_err(|err| TfError::io(&path, err))?;
        let crc = mask_crc(crc32c::crc32c(&buf));
        if crc != e.crc32c {
            return Err(shard_error(format!(
                "checksum mismatch (CRC-32C {crc:#010x}, the index says {:#010x}): the file is damaged",
                e.crc32c
            )));
        }
        Ok(buf.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
    }
}

impl Bundle {
    fn tensor_error(&self, name: &str, reason: String) -> TfError {
        TfError::Tensor { path: self.index.clone(), name: name.to_string(), reason }
    }
}
