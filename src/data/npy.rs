//! NumPy `.npy` files for embeddings and labels (via the `npyz` crate).

use std::path::{Path, PathBuf};

use npyz::{DType, NpyFile, TypeChar, WriterBuilder};

#[derive(Debug, thiserror::Error)]
pub enum NpyError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {msg}")]
    Format { path: PathBuf, msg: String },
}

fn open(path: &Path) -> Result<NpyFile<std::io::BufReader<std::fs::File>>, NpyError> {
    let io = |source| NpyError::Io { path: path.to_path_buf(), source };
    let f = std::fs::File::open(path).map_err(io)?;
    check_header(&f).map_err(|msg| format_err(path, msg))?;
    NpyFile::new(std::io::BufReader::new(f)).map_err(io)
}

/// What `npyz` takes on trust, checked first, so that a lying header is an error rather than
/// a header buffer of up to 4 GiB or an overflowing element count (a panic in debug builds):
/// the header must fit in the file, the shape's dimensions must multiply without overflow,
/// and the array must not have more elements than the file has bytes. Anything else (not
/// `.npy`, a header it cannot read) is left to `npyz`, which words the error. Leaves the file
/// at its start.
fn check_header(file: &std::fs::File) -> Result<(), String> {
    use std::io::{Read, Seek};
    let mut f = file;
    let len = f.metadata().map_err(|e| e.to_string())?.len();
    let mut pre = [0u8; 12];
    let got = f.read(&mut pre).map_err(|e| e.to_string())?;
    let result = (|| {
        if got < 10 || !pre.starts_with(b"\x93NUMPY") {
            return Ok(());
        }
        let (header_len, start) = match pre[6] {
            1 => (u16::from_le_bytes([pre[8], pre[9]]) as u64, 10),
            _ => (u32::from_le_bytes([pre[8], pre[9], pre[10], pre[11]]) as u64, 12),
        };
        if start + header_len > len {
            return Err(format!("header of {header_len} bytes, longer than the file ({len} bytes)"));
        }
        let mut header = vec![0u8; header_len as usize];
        f.seek(std::io::SeekFrom::Start(start)).and_then(|_| f.read_exact(&mut header)).map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&header);
        let Some(shape) = text.split("'shape'").nth(1).and_then(|r| r.split_once('(')).and_then(|(_, r)| r.split_once(')')) else {
            return Ok(());
        };
        // (the product of the non-zero dimensions bounds every product npyz takes)
        let (mut nonzero, mut total) = (1u64, 1u64);
        for d in shape.0.split(',').map(str::trim).filter(|d| !d.is_empty()) {
            let Ok(d) = d.parse::<u64>() else { return Ok(()) };
            nonzero = nonzero.checked_mul(d.max(1)).ok_or_else(|| format!("shape ({}) is too large", shape.0))?;
            total = total.saturating_mul(d);
        }
        if total > len {
            return Err(format!("shape ({}) has more elements than the file has bytes ({len})", shape.0));
        }
        Ok(())
    })();
    f.rewind().map_err(|e| e.to_string())?;
    result
}

fn format_err(path: &Path, msg: String) -> NpyError {
    NpyError::Format { path: path.to_path_buf(), msg }
}

/// Reads a 2-D float32/float64 array as f64, row-major: (values, rows, cols).
pub fn read_matrix(path: &Path) -> Result<(Vec<f64>, usize, usize), NpyError> {
    let npy = open(path)?;
    let shape = npy.shape().to_vec();
    if shape.len() != 2 {
        return Err(format_err(path, format!("expected a 2-D array, found shape {shape:?}")));
    }
    if npy.order() != npyz::Order::C {
        return Err(format_err(path, "Fortran-ordered arrays are not supported; save with np.ascontiguousarray".into()));
    }
    let (rows, cols) = (shape[0] as usize, shape[1] as usize);
    let count = rows.checked_mul(cols).ok_or_else(|| format_err(path, format!("shape {shape:?} is too large")))?;
    let io = |source| NpyError::Io { path: path.to_path_buf(), source };
    let values = match npy.dtype() {
        DType::Plain(t) if t.type_char() == TypeChar::Float && t.size_field() == 8 => npy.into_vec::<f64>().map_err(io)?,
        DType::Plain(t) if t.type_char() == TypeChar::Float && t.size_field() == 4 => {
            npy.into_vec::<f32>().map_err(io)?.into_iter().map(f64::from).collect()
        }
        d => return Err(format_err(path, format!("expected float32 or float64, found {}", d.descr()))),
    };
    if values.len() != count {
        return Err(format_err(path, format!("{} values for shape {shape:?}", values.len())));
    }
    Ok((values, rows, cols))
}

/// Reads a 1-D array of booleans (or integers, nonzero = true).
pub fn read_bools(path: &Path) -> Result<Vec<bool>, NpyError> {
    let npy = open(path)?;
    let shape = npy.shape().to_vec();
    if shape.len() != 1 {
        return Err(format_err(path, format!("expected a 1-D array, found shape {shape:?}")));
    }
    let io = |source| NpyError::Io { path: path.to_path_buf(), source };
    match npy.dtype() {
        DType::Plain(t) if t.type_char() == TypeChar::Bool => npy.into_vec::<bool>().map_err(io),
        DType::Plain(t) if t.type_char() == TypeChar::Int => Ok(npy.into_vec::<i64>().map_err(io)?.into_iter().map(|v| v != 0).collect()),
        DType::Plain(t) if t.type_char() == TypeChar::Uint => Ok(npy.into_vec::<u64>().map_err(io)?.into_iter().map(|v| v != 0).collect()),
        d => Err(format_err(path, format!("expected bool or integer, found {}", d.descr()))),
    }
}

/// Writes a 2-D float32 array (atomically).
pub fn write_matrix_f32(path: &Path, values: &[f32], rows: usize, cols: usize) -> std::io::Result<()> {
    assert_eq!(values.len(), rows * cols, "matrix shape mismatch");
    crate::util::atomic::write_atomic_with(path, |w| {
        let mut writer = npyz::WriteOptions::new().default_dtype().shape(&[rows as u64, cols as u64]).writer(w).begin_nd()?;
        writer.extend(values.iter().copied())?;
        writer.finish()
    })
}

/// Writes a 1-D bool array (atomically).
pub fn write_bools(path: &Path, values: &[bool]) -> std::io::Result<()> {
    crate::util::atomic::write_atomic_with(path, |w| {
        let mut writer = npyz::WriteOptions::new().default_dtype().shape(&[values.len() as u64]).writer(w).begin_nd()?;
        writer.extend(values.iter().copied())?;
        writer.finish()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_errors() {
        let d = tempfile::tempdir().unwrap();
        let m = d.path().join("m.npy");
        write_matrix_f32(&m, &[1.0, 2.0, 3.0, 4.5, 5.0, 6.0], 2, 3).unwrap();
        let (v, r, c) = read_matrix(&m).unwrap();
        assert_eq!((r, c), (2, 3));
        assert_eq!(v, vec![1.0, 2.0, 3.0, 4.5, 5.0, 6.0]);
        let b = d.path().join("b.npy");
        write_bools(&b, &[true, false, true]).unwrap();
        assert_eq!(read_bools(&b).unwrap(), vec![true, false, true]);
        assert!(read_matrix(&b).unwrap_err().to_string().contains("2-D"));
        assert!(read_bools(&m).unwrap_err().to_string().contains("1-D"));
        // a header that lies about its length or its shape is refused before npyz reads it
        let lying = |header_len: Option<u16>, shape: &str| {
            let mut f = b"\x93NUMPY\x01\x00".to_vec();
            let dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}\n");
            f.extend_from_slice(&header_len.unwrap_or(dict.len() as u16).to_le_bytes());
            f.extend_from_slice(dict.as_bytes());
            let p = d.path().join("lying.npy");
            std::fs::write(&p, f).unwrap();
            read_matrix(&p).unwrap_err().to_string()
        };
        assert!(lying(Some(60000), "(2, 3)").contains("longer than the file"));
        let e = lying(None, "(4294967296, 4294967296)");
        assert!(e.contains("lying.npy") && e.contains("too large"), "{e}");
        assert!(lying(None, "(1000, 1000)").contains("more elements than the file has bytes"));
        let junk = d.path().join("junk.npy");
        std::fs::write(&junk, b"not numpy").unwrap();
        assert!(read_matrix(&junk).unwrap_err().to_string().contains("junk.npy"));
    }
}
