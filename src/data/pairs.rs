//! LFW pairs files.
//!
//! A header line (`folds n` in the standard file: `10\t300`), then one pair per line,
//! whitespace separated: `Name n1 n2` (same person) or `Name1 n1 Name2 n2` (different
//! people). Like the reference, the first line is always taken as the header. Blank lines
//! and lines starting with `#` are ignored. Image `n` of `Name` is `Name/Name_%04d.<ext>`,
//! where the extension is whichever of jpg / png exists.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// One line of a pairs file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pair {
    pub name1: String,
    pub index1: u32,
    pub name2: String,
    pub index2: u32,
}

impl Pair {
    pub fn same(name: &str, i: u32, j: u32) -> Self {
        Pair { name1: name.into(), index1: i, name2: name.into(), index2: j }
    }
    pub fn different(name1: &str, i: u32, name2: &str, j: u32) -> Self {
        Pair { name1: name1.into(), index1: i, name2: name2.into(), index2: j }
    }
    pub fn is_same(&self) -> bool {
        self.name1 == self.name2
    }
}

/// A parsed pairs file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PairsFile {
    /// `(folds, pairs of each kind per fold)` when the header is two integers.
    pub header: Option<(usize, usize)>,
    pub pairs: Vec<Pair>,
}

#[derive(Debug, thiserror::Error)]
pub enum PairsError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}:{line}: {msg}")]
    Line { path: PathBuf, line: usize, msg: String },
    #[error("{path}: no pairs after the header line")]
    Empty { path: PathBuf },
    #[error("{count} image(s) of the pairs file are missing under {dir}, e.g. {examples}")]
    Missing { dir: PathBuf, count: usize, examples: String, missing: Vec<PathBuf> },
}

/// Parses pairs text; `path` only names the source in errors.
pub fn parse_pairs(text: &str, path: &Path) -> Result<PairsFile, PairsError> {
    let mut out = PairsFile::default();
    let err = |line: usize, msg: String| PairsError::Line { path: path.to_path_buf(), line, msg };
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = raw.trim();
        if line_no == 1 {
            let f: Vec<&str> = line.split_whitespace().collect();
            if let [a, b] = f.as_slice() {
                if let (Ok(a), Ok(b)) = (a.parse(), b.parse()) {
                    out.header = Some((a, b));
                }
            }
            continue;
        }
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        let num = |s: &str| -> Result<u32, PairsError> {
            match s.parse::<u32>() {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(err(line_no, format!("expected a positive image number, found '{s}'"))),
            }
        };
        let pair = match f.as_slice() {
            [name, a, b] => Pair::same(name, num(a)?, num(b)?),
            [n1, a, n2, b] => Pair::different(n1, num(a)?, n2, num(b)?),
            _ => return Err(err(line_no, format!("expected 3 or 4 fields, found {}", f.len()))),
        };
        out.pairs.push(pair);
    }
    if out.pairs.is_empty() {
        return Err(PairsError::Empty { path: path.to_path_buf() });
    }
    Ok(out)
}

/// Reads and parses a pairs file.
pub fn read_pairs(path: &Path) -> Result<PairsFile, PairsError> {
    let text = std::fs::read_to_string(path).map_err(|source| PairsError::Io { path: path.to_path_buf(), source })?;
    parse_pairs(&text, path)
}

/// Renders pairs in the LFW format (tab separated, header `folds<TAB>n`).
pub fn format_pairs(folds: usize, per_fold: usize, pairs: &[Pair]) -> String {
    let mut s = format!("{folds}\t{per_fold}\n");
    for p in pairs {
        if p.is_same() {
            let _ = writeln!(s, "{}\t{}\t{}", p.name1, p.index1, p.index2);
        } else {
            let _ = writeln!(s, "{}\t{}\t{}\t{}", p.name1, p.index1, p.name2, p.index2);
        }
    }
    s
}

/// The file stem of image `index` of `name`: `Name_0001`.
pub fn image_stem(name: &str, index: u32) -> String {
    format!("{name}_{index:04}")
}

/// The extensions tried, in order, for a pair's image.
pub const PAIR_EXTENSIONS: &[&str] = &["jpg", "png"];

/// `dir/Name/Name_%04d.<ext>` with the first extension that exists, or `None`.
pub fn resolve_image(dir: &Path, name: &str, index: u32) -> Option<PathBuf> {
    let stem = image_stem(name, index);
    PAIR_EXTENSIONS.iter().map(|ext| dir.join(name).join(format!("{stem}.{ext}"))).find(|p| p.is_file())
}

/// Image paths of all pairs (2 per pair, consecutive) and whether each pair is the same
/// person. With `skip_missing` pairs with a missing image are dropped (their count is
/// returned); otherwise any missing image is an error listing them.
pub fn resolve_pairs(dir: &Path, pairs: &[Pair], skip_missing: bool) -> Result<(Vec<PathBuf>, Vec<bool>, usize), PairsError> {
    let mut paths = Vec::with_capacity(pairs.len() * 2);
    let mut issame = Vec::with_capacity(pairs.len());
    let mut missing = Vec::new();
    let mut dropped = 0;
    for p in pairs {
        let a = resolve_image(dir, &p.name1, p.index1);
        let b = resolve_image(dir, &p.name2, p.index2);
        match (a, b) {
            (Some(a), Some(b)) => {
                paths.push(a);
                paths.push(b);
                issame.push(p.is_same());
            }
            (a, b) => {
                dropped += 1;
                if a.is_none() {
                    missing.push(dir.join(&p.name1).join(format!("{}.(jpg|png)", image_stem(&p.name1, p.index1))));
                }
                if b.is_none() {
                    missing.push(dir.join(&p.name2).join(format!("{}.(jpg|png)", image_stem(&p.name2, p.index2))));
                }
            }
        }
    }
    if !missing.is_empty() && !skip_missing {
        missing.sort();
        missing.dedup();
        let examples = missing.iter().take(3).map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ");
        return Err(PairsError::Missing { dir: dir.to_path_buf(), count: missing.len(), examples, missing });
    }
    Ok((paths, issame, dropped))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lfw_format() {
        let t = "2\t1\nAbel_Pacheco\t1\t4\nA_B 1 C_D 2\n\n# comment\nX 3 4\nY 1 Z 10\n";
        let pf = parse_pairs(t, Path::new("p.txt")).unwrap();
        assert_eq!(pf.header, Some((2, 1)));
        assert_eq!(pf.pairs.len(), 4);
        assert_eq!(pf.pairs[0], Pair::same("Abel_Pacheco", 1, 4));
        assert!(pf.pairs[0].is_same());
        assert_eq!(pf.pairs[1], Pair::different("A_B", 1, "C_D", 2));
        assert!(!pf.pairs[1].is_same());
        // round trip
        let again = parse_pairs(&format_pairs(2, 1, &pf.pairs), Path::new("q")).unwrap();
        assert_eq!(again, pf);
    }

    #[test]
    fn errors_name_file_and_line() {
        let e = parse_pairs("10 300\nA 1 2\nB 1\n", Path::new("pairs.txt")).unwrap_err();
        assert_eq!(e.to_string(), "pairs.txt:3: expected 3 or 4 fields, found 2");
        let e = parse_pairs("h\nA 1 x\n", Path::new("p")).unwrap_err();
        assert_eq!(e.to_string(), "p:2: expected a positive image number, found 'x'");
        let e = parse_pairs("h\nA 0 2\n", Path::new("p")).unwrap_err();
        assert!(e.to_string().starts_with("p:2:"));
        let e = parse_pairs("h\nA 1 B 2 C\n", Path::new("p")).unwrap_err();
        assert!(e.to_string().contains("found 5"));
        assert!(matches!(parse_pairs("10 300\n", Path::new("p")), Err(PairsError::Empty { .. })));
        assert!(matches!(read_pairs(Path::new("/nonexistent/pairs.txt")), Err(PairsError::Io { .. })));
    }

    #[test]
    fn resolves_extensions_and_reports_missing() {
        let d = tempfile::tempdir().unwrap();
        let mk = |rel: &str| {
            let p = d.path().join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, b"x").unwrap();
        };
        mk("Ann/Ann_0001.png");
        mk("Ann/Ann_0002.jpg");
        mk("Bo/Bo_0001.png");
        let pairs = vec![Pair::same("Ann", 1, 2), Pair::different("Ann", 1, "Bo", 1), Pair::same("Bo", 1, 2)];
        let e = resolve_pairs(d.path(), &pairs, false).unwrap_err();
        assert!(e.to_string().contains("1 image(s)"), "{e}");
        assert!(e.to_string().contains("Bo_0002"), "{e}");
        let (paths, issame, dropped) = resolve_pairs(d.path(), &pairs, true).unwrap();
        assert_eq!(dropped, 1);
        assert_eq!(issame, vec![true, false]);
        assert_eq!(paths[0], d.path().join("Ann/Ann_0001.png"));
        assert_eq!(paths[1], d.path().join("Ann/Ann_0002.jpg"));
    }
}
