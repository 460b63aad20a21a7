//! Command-line arguments in the reference's spelling: every long flag is accepted both in
//! kebab-case (`--data-dir`) and in snake_case (`--data_dir`); [`normalize_args`] rewrites
//! the latter before clap parses them. Used by the CLI and wherever options are parsed from a
//! stored command line (the demo's training run, `TrainOptions::parse_from`).

use std::ffi::OsString;

/// Rewrites `--snake_case[=v]` flags to `--snake-case[=v]`; stops at a bare `--`.
pub fn normalize_args(args: Vec<OsString>) -> Vec<OsString> {
    let mut out = Vec::with_capacity(args.len());
    let mut passthrough = false;
    for a in args {
        if passthrough {
            out.push(a);
            continue;
        }
        match a.to_str() {
            Some("--") => {
                passthrough = true;
                out.push(a);
            }
            Some(s) if s.starts_with("--") => {
                let (name, value) = match s.find('=') {
                    Some(i) => (&s[..i], Some(&s[i..])),
                    None => (s, None),
                };
                let mut fixed = format!("--{}", name[2..].replace('_', "-"));
                if let Some(v) = value {
                    fixed.push_str(v);
                }
                out.push(fixed.into());
            }
            _ => out.push(a),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn snake_case_flags_are_rewritten() {
        let got = normalize_args(os(&["facenet", "train", "--data_dir", "/a_b", "--max_nrof_epochs=3", "x_y", "--", "--keep_me"]));
        assert_eq!(got, os(&["facenet", "train", "--data-dir", "/a_b", "--max-nrof-epochs=3", "x_y", "--", "--keep_me"]));
    }
}
