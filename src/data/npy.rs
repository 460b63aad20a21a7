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
    NpyFile::new(std::io::BufReader::new(f)).map_err(io)
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
    let io = |source| NpyError::Io { path: path.to_path_buf(), source };
    let values = match npy.dtype() {
        DType::Plain(t) if t.type_char() == TypeChar::Float && t.size_field() == 8 => npy.into_vec::<f64>().map_err(io)?,
        DType::Plain(t) if t.type_char() == TypeChar::Float && t.size_field() == 4 => {
            npy.into_vec::<f32>().map_err(io)?.into_iter().map(f64::from).collect()
        }
        d => return Err(format_err(path, format!("expected float32 or float64, found {}", d.descr()))),
    };
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
        let junk = d.path().join("junk.npy");
        std::fs::write(&junk, b"not numpy").unwrap();
        assert!(read_matrix(&junk).unwrap_err().to_string().contains("junk.npy"));
    }
}
