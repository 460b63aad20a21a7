//! A minimal reader/writer of the safetensors format for named f32 tensors (optimizer
//! slots, class centres): 8-byte little-endian header length, a JSON header
//! `{name: {dtype, shape, data_offsets}, "__metadata__": {..}}`, then the raw data. Files
//! written here open with any safetensors reader.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use serde_json::{json, Map, Value};

use super::optim::StoredTensor;

/// Encodes `tensors` (name -> shape, values) with string `metadata`.
pub fn encode(tensors: &BTreeMap<String, StoredTensor>, metadata: &BTreeMap<String, String>) -> Result<Vec<u8>> {
    let mut header = Map::new();
    if !metadata.is_empty() {
        header.insert("__metadata__".into(), json!(metadata));
    }
    let mut offset = 0usize;
    for (name, (shape, values)) in tensors {
        let n: usize = shape.iter().product();
        if n != values.len() {
            bail!("tensor '{name}': {} values for shape {shape:?}", values.len());
        }
        let end = offset + 4 * n;
        header.insert(name.clone(), json!({"dtype": "F32", "shape": shape, "data_offsets": [offset, end]}));
        offset = end;
    }
    let mut h = serde_json::to_vec(&Value::Object(header))?;
    while h.len() % 8 != 0 {
        h.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + h.len() + offset);
    out.extend_from_slice(&(h.len() as u64).to_le_bytes());
    out.extend_from_slice(&h);
    for (_, values) in tensors.values() {
        for v in values {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    Ok(out)
}

/// Decodes what [`encode`] wrote (f32 tensors only).
pub fn decode(bytes: &[u8]) -> Result<(BTreeMap<String, StoredTensor>, BTreeMap<String, String>)> {
    if bytes.len() < 8 {
        bail!("not a safetensors file (too short)");
    }
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    if 8 + n > bytes.len() {
        bail!("not a safetensors file (header length {n} exceeds the file)");
    }
    let header: Map<String, Value> = serde_json::from_slice(&bytes[8..8 + n]).context("safetensors header is not a JSON object")?;
    let data = &bytes[8 + n..];
    let mut tensors = BTreeMap::new();
    let mut metadata = BTreeMap::new();
    for (name, v) in header {
        if name == "__metadata__" {
            if let Value::Object(m) = v {
                for (k, v) in m {
                    metadata.insert(k, v.as_str().unwrap_or_default().to_string());
                }
            }
            continue;
        }
        let dtype = v["dtype"].as_str().unwrap_or("");
        if dtype != "F32" {
            bail!("tensor '{name}': dtype {dtype}, expected F32");
        }
        let shape: Vec<usize> = serde_json::from_value(v["shape"].clone()).with_context(|| format!("tensor '{name}': bad shape"))?;
        let offs: [usize; 2] =
            serde_json::from_value(v["data_offsets"].clone()).with_context(|| format!("tensor '{name}': bad data_offsets"))?;
        let count: usize = shape.iter().product();
        if offs[1] < offs[0] || offs[1] > data.len() || offs[1] - offs[0] != 4 * count {
            bail!("tensor '{name}': data_offsets {offs:?} do not fit shape {shape:?} and the file ({} data bytes)", data.len());
        }
        let values = data[offs[0]..offs[1]].chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes"))).collect();
        tensors.insert(name, (shape, values));
    }
    Ok((tensors, metadata))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut t = BTreeMap::new();
        t.insert("a/b".to_string(), (vec![2, 3], vec![1.0f32, 2.0, 3.0, 4.0, 5.0, -6.5]));
        t.insert("centers".to_string(), (vec![1], vec![f32::MIN_POSITIVE]));
        t.insert("empty".to_string(), (vec![0, 4], vec![]));
        let mut m = BTreeMap::new();
        m.insert("steps".to_string(), "12".to_string());
        let bytes = encode(&t, &m).unwrap();
        assert_eq!(u64::from_le_bytes(bytes[..8].try_into().unwrap()) % 8, 0);
        let (t2, m2) = decode(&bytes).unwrap();
        assert_eq!(t2, t);
        assert_eq!(m2, m);
        assert!(decode(&bytes[..bytes.len() - 4]).is_err());
        assert!(decode(b"xx").is_err());
        let mut bad = BTreeMap::new();
        bad.insert("x".to_string(), (vec![3], vec![1.0f32]));
        assert!(encode(&bad, &m).is_err());
    }
}
