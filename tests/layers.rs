//! The layout's one rule, checked: layers point down. A module of `src/` may refer to
//! (`crate::<module>`) only modules of a lower layer, outside its unit tests:
//!
//! ```text
//! cli > demo > report, train > eval > align > synth, model > data > util
//! ```

use std::path::Path;

/// (module, layer): a higher layer may use a lower one, never the reverse or a sibling.
const LAYERS: &[(&str, u32)] = &[
    ("util", 0),
    ("data", 1),
    ("model", 2),
    ("synth", 2),
    ("align", 3),
    ("eval", 4),
    ("train", 5),
    ("report", 5),
    ("demo", 6),
    ("cli", 7),
];

fn layer(module: &str) -> Option<u32> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|(_, l)| *l)
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

fn ident(s: &str) -> String {
    s.trim_start().chars().take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_').collect()
}

/// The `crate::<module>` references of a file's code (`crate::a::x`, `crate::{a, b::y}`),
/// comments and test-only modules (`#[cfg(test)] mod ...`, by convention at the end) left out.
fn references(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut cfg_test = false;
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if cfg_test && (trimmed.starts_with("mod ") || trimmed.starts_with("pub mod ")) {
            break;
        }
        cfg_test = trimmed.starts_with("#[cfg(test)]");
        let code = if trimmed.starts_with("//") { "" } else { line.split(" //").next().unwrap_or("") };
        let mut rest = code;
        while let Some(k) = rest.find("crate::") {
            rest = &rest[k + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                let inner = group.split('}').next().unwrap_or("");
                out.extend(inner.split(',').map(ident).filter(|n| !n.is_empty()).map(|n| (i + 1, n)));
            } else {
                out.push((i + 1, ident(rest)));
            }
        }
    }
    out
}

#[test]
fn every_module_is_in_a_layer() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    for entry in std::fs::read_dir(&src).unwrap() {
        let p = entry.unwrap().path();
        let name = p.file_stem().unwrap().to_string_lossy().into_owned();
        if p.is_dir() {
            assert!(layer(&name).is_some(), "src/{name}/ is in no layer of tests/layers.rs");
        } else {
            assert!(name == "lib" || name == "main", "src/{name}.rs: a module belongs in a folder of its layer");
        }
    }
}

#[test]
fn layers_point_down() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut wrong = Vec::new();
    for f in &files {
        let rel = f.strip_prefix(&src).unwrap();
        let Some(module) = rel.components().next().map(|c| c.as_os_str().to_string_lossy().into_owned()) else { continue };
        let Some(own) = layer(module.trim_end_matches(".rs")) else { continue };
        let text = std::fs::read_to_string(f).unwrap();
        for (line, target) in references(&text) {
            match layer(&target) {
                Some(l) if target != module && l >= own => wrong.push(format!("src/{}:{line}: {module} uses {target}", rel.display())),
                _ => {}
            }
        }
    }
    assert!(wrong.is_empty(), "modules that use a module of their own or a higher layer:\n{}", wrong.join("\n"));
}

#[test]
fn the_check_sees_a_reference_upward() {
    let text = "use crate::cli::x; // crate::demo in a comment\n\
                fn f() { crate::train::go() }\n\
                use crate::{eval, model::load};\n\
                #[cfg(test)]\n\
                use crate::data;\n\
                #[cfg(test)]\n\
                mod tests {\n\
                use crate::cli;\n\
                }";
    let names: Vec<(usize, String)> =
        [(1, "cli"), (2, "train"), (3, "eval"), (3, "model"), (5, "data")].map(|(l, n)| (l, n.to_string())).into();
    assert_eq!(references(text), names);
}
