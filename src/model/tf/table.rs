//! LevelDB-format table files ("SSTables"), as TensorFlow writes a checkpoint's `.index`.
//!
//! Hand-written: the crates that read LevelDB tables read them as part of a database (with its
//! options, environment, caches, snappy and filter policies) rather than one file, and
//! TensorFlow's tensor-bundle index uses only the plain subset of the format: uncompressed
//! blocks, no filter block, an empty metaindex. That subset is what is read here:
//!
//! ```text
//! file   = data block* , metaindex block , index block , footer
//! footer = (48 bytes) metaindex handle, index handle (varint offset + size each), zero
//!          padding to 40 bytes, magic 0xdb4775248b80fb57 (fixed64, little endian)
//! block  = entry* , restart offsets (fixed32 each), restart count (fixed32),
//!          then a 5-byte trailer: compression type (0 = none), masked CRC-32C of the
//!          contents and the type byte
//! entry  = shared key bytes, unshared key bytes, value bytes (varint32 each),
//!          the unshared key suffix, the value
//! ```
//!
//! The index block's values are the handles of the data blocks, whose entries are the table's
//! (key, value) pairs in key order.

/// A (key, value) entry of a table.
pub type Entry = (Vec<u8>, Vec<u8>);

/// The table's magic number (the last 8 bytes of the file).
pub const MAGIC: u64 = 0xdb47_7524_8b80_fb57;
/// Length of the footer.
pub const FOOTER_LEN: usize = 48;

/// The CRC-32C masking of LevelDB and TensorFlow (a CRC stored next to the data it covers).
pub fn mask_crc(crc: u32) -> u32 {
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// A varint (LEB128, at most 10 bytes) at `*at`; advances `*at`.
fn varint(buf: &[u8], at: &mut usize) -> Result<u64, String> {
    let mut v = 0u64;
    for shift in (0..70).step_by(7) {
        let b = *buf.get(*at).ok_or("truncated varint")?;
        *at += 1;
        if shift == 63 && b > 1 {
            return Err("varint overflows 64 bits".into());
        }
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err("varint longer than 10 bytes".into())
}

fn fixed32(buf: &[u8], at: usize) -> Result<u32, String> {
    buf.get(at..at + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])).ok_or_else(|| "truncated".into())
}

/// The (offset, size) of a block.
fn handle(buf: &[u8], at: &mut usize) -> Result<(usize, usize), String> {
    let offset = varint(buf, at)?;
    let size = varint(buf, at)?;
    Ok((usize::try_from(offset).map_err(|_| "block offset")?, usize::try_from(size).map_err(|_| "block size")?))
}

/// The contents of the block at `(offset, size)` of `file`, its trailer checked.
fn block(file: &[u8], (offset, size): (usize, usize)) -> Result<&[u8], String> {
    let end = offset.checked_add(size).filter(|&e| e.checked_add(5).is_some_and(|t| t <= file.len()));
    let end = end.ok_or_else(|| format!("block at {offset} (+{size} bytes) past the end of the file ({} bytes)", file.len()))?;
    let contents = &file[offset..end];
    let kind = file[end];
    let stored = fixed32(file, end + 1)?;
    let crc = crc32c::crc32c_append(crc32c::crc32c(contents), &[kind]);
    if mask_crc(crc) != stored {
        return Err(format!("block at {offset}: checksum mismatch (the file is damaged)"));
    }
    if kind != 0 {
        return Err(format!("block at {offset}: compression type {kind} (TensorFlow checkpoints are uncompressed)"));
    }
    Ok(contents)
}

/// A key and its value, borrowed from the block.
type BlockEntry<'a> = (Vec<u8>, &'a [u8]);

/// The (key, value) entries of a block, in order.
fn entries(block: &[u8]) -> Result<Vec<BlockEntry<'_>>, String> {
    if block.len() < 4 {
        return Err("block shorter than its restart count".into());
    }
    let restarts = fixed32(block, block.len() - 4)? as usize;
    let end = restarts.checked_mul(4).and_then(|r| block.len().checked_sub(4 + r)).ok_or("restart array longer than the block")?;
    let mut out: Vec<BlockEntry<'_>> = Vec::new();
    let mut at = 0;
    let mut key: Vec<u8> = Vec::new();
    while at < end {
        let shared = varint(block, &mut at)? as usize;
        let unshared = varint(block, &mut at)? as usize;
        let value_len = varint(block, &mut at)? as usize;
        if shared > key.len() {
            return Err(format!("entry at {at} shares {shared} bytes of a {}-byte key", key.len()));
        }
        let key_end = at.checked_add(unshared).filter(|&e| e <= end).ok_or("entry key past the block's end")?;
        let value_end = key_end.checked_add(value_len).filter(|&e| e <= end).ok_or("entry value past the block's end")?;
        key.truncate(shared);
        key.extend_from_slice(&block[at..key_end]);
        out.push((key.clone(), &block[key_end..value_end]));
        at = value_end;
    }
    Ok(out)
}

/// Every (key, value) of a table file, in key order. Errors say what is wrong (the caller
/// names the file).
pub fn read_table(file: &[u8]) -> Result<Vec<Entry>, String> {
    if file.len() < FOOTER_LEN {
        return Err(format!("{} bytes, shorter than a table's footer", file.len()));
    }
    let footer = &file[file.len() - FOOTER_LEN..];
    let magic = u64::from_le_bytes(footer[40..48].try_into().map_err(|_| "footer")?);
    if magic != MAGIC {
        return Err(format!("no table magic number at the end (found {magic:#018x})"));
    }
    let mut at = 0;
    let _metaindex = handle(footer, &mut at)?;
    let index = handle(footer, &mut at)?;
    let mut out = Vec::new();
    for (_, value) in entries(block(file, index)?)? {
        let mut p = 0;
        let data = handle(value, &mut p)?;
        for (k, v) in entries(block(file, data)?)? {
            out.push((k, v.to_vec()));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put_varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    /// A block of `pairs` with prefix-compressed keys and a restart every `interval` entries.
    fn make_block(pairs: &[(&[u8], &[u8])], interval: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let mut restarts = Vec::new();
        let mut prev: &[u8] = b"";
        for (i, (k, v)) in pairs.iter().enumerate() {
            let shared = if i % interval == 0 {
                restarts.push(out.len() as u32);
                0
            } else {
                prev.iter().zip(k.iter()).take_while(|(a, b)| a == b).count()
            };
            put_varint(&mut out, shared as u64);
            put_varint(&mut out, (k.len() - shared) as u64);
            put_varint(&mut out, v.len() as u64);
            out.extend_from_slice(&k[shared..]);
            out.extend_from_slice(v);
            prev = k;
        }
        for r in &restarts {
            out.extend_from_slice(&r.to_le_bytes());
        }
        out.extend_from_slice(&(restarts.len() as u32).to_le_bytes());
        out
    }

    fn append_block(file: &mut Vec<u8>, contents: &[u8]) -> (u64, u64) {
        let offset = file.len() as u64;
        file.extend_from_slice(contents);
        file.push(0);
        let crc = crc32c::crc32c_append(crc32c::crc32c(contents), &[0]);
        file.extend_from_slice(&mask_crc(crc).to_le_bytes());
        (offset, contents.len() as u64)
    }

    /// A table of two data blocks.
    fn make_table(a: &[(&[u8], &[u8])], b: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut file = Vec::new();
        let h1 = append_block(&mut file, &make_block(a, 2));
        let h2 = append_block(&mut file, &make_block(b, 16));
        let meta = append_block(&mut file, &make_block(&[], 16));
        let enc = |h: (u64, u64)| {
            let mut v = Vec::new();
            put_varint(&mut v, h.0);
            put_varint(&mut v, h.1);
            v
        };
        let (e1, e2) = (enc(h1), enc(h2));
        let index = append_block(&mut file, &make_block(&[(a.last().unwrap().0, &e1), (b.last().unwrap().0, &e2)], 1));
        let mut footer = enc(meta);
        footer.extend(enc(index));
        footer.resize(40, 0);
        footer.extend_from_slice(&MAGIC.to_le_bytes());
        file.extend(footer);
        file
    }

    #[test]
    fn reads_prefix_compressed_blocks() {
        let a: &[(&[u8], &[u8])] = &[(b"", b"header"), (b"abc/x", b"1"), (b"abc/xy", b"22"), (b"abd", b"")];
        let b: &[(&[u8], &[u8])] = &[(b"abd/long/name", b"333"), (b"abd/long/name2", &[7; 300])];
        let t = make_table(a, b);
        let got = read_table(&t).unwrap();
        let want: Vec<Entry> = a.iter().chain(b).map(|(k, v)| (k.to_vec(), v.to_vec())).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn damaged_tables_are_errors() {
        let t = make_table(&[(b"k", b"v")], &[(b"l", b"w")]);
        assert!(read_table(&t[..40]).unwrap_err().contains("footer"));
        let mut bad = t.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert!(read_table(&bad).unwrap_err().contains("magic"));
        let mut bad = t.clone();
        bad[0] ^= 0x40;
        assert!(read_table(&bad).unwrap_err().contains("checksum"));
        // every truncation and every single-byte change is an error or a clean read, never a panic
        for n in 0..t.len() {
            let _ = read_table(&t[..n]);
            for bit in [1u8, 0x80] {
                let mut c = t.clone();
                c[n] ^= bit;
                let _ = read_table(&c);
            }
        }
        assert_eq!(mask_crc(0), 0xa282_ead8);
    }
}
