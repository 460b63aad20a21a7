#!/usr/bin/env bash
# Each vendored crate under patches/ (burn-flex, cubecl-cuda) must be exactly the published
# crate plus patches/<crate>.diff. This script fetches the published crate through cargo (a
# throwaway project in a temp dir; an existing CARGO_HOME and its cache are used), applies
# the diff with `patch -p1` and compares the result with patches/<crate>.
#
#   patches/check.sh          check every crate; exits 1 with a message when one differs (CI)
#   patches/check.sh --write  regenerate patches/<crate>.diff from patches/<crate>
#                             (after changing the fork), then check
#   patches/check.sh --rebase replace patches/<crate> by the published crate (VERSION,
#                             after a bump) with the diff applied by `patch --merge`;
#                             conflicts are left as <<<<<<< markers to resolve
#   PATCH_CRATE=cubecl-cuda patches/check.sh [...]   one crate only
#
# Needs only cargo (with the registry reachable, or the crate already in its cache),
# diff and patch.
set -euo pipefail

if [[ -z ${PATCH_CRATE:-} ]]; then
  rc=0
  for crate in burn-flex cubecl-cuda; do
    PATCH_CRATE=$crate "$0" "$@" || rc=$?
  done
  exit $rc
fi

# Files of the published crate that the vendored copy leaves out (removed from the
# published copy before the diff is applied or written): its Cargo.lock (cargo ignores a
# dependency's lockfile) and, for burn-flex, upstream's benchmark and comparison write-ups
# and acknowledgements (about 80 KB of prose). `.cargo-ok`, the marker cargo writes after
# unpacking a crate, is removed too when present: it is not part of the crate.
case $PATCH_CRATE in
  burn-flex)
    CRATE=burn-flex VERSION=0.22.1
    DROPPED=(ACKNOWLEDGMENTS.md BENCHMARKS.md COMPARISON.md Cargo.lock)
    ;;
  cubecl-cuda)
    CRATE=cubecl-cuda VERSION=0.11.3
    DROPPED=(Cargo.lock)
    ;;
  *) echo "check.sh: no vendored crate '$PATCH_CRATE' (burn-flex, cubecl-cuda)" >&2; exit 2 ;;
esac

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
vendored=$here/$CRATE
diff_file=$here/$CRATE.diff
mode=check
case "${1:-}" in
  "") ;;
  --write) mode=write ;;
  --rebase) mode=rebase ;;
  *) echo "usage: $0 [--write | --rebase]" >&2; exit 2 ;;
esac

export LC_ALL=C TZ=UTC
work=$(mktemp -d "${TMPDIR:-/tmp}/$CRATE-check.XXXXXX")
trap 'rm -rf "$work"' EXIT

# --- the published crate, through cargo --------------------------------------------
mkdir -p "$work/fetch/src"
cat >"$work/fetch/Cargo.toml" <<EOF
[package]
name = "fetch-published-$CRATE"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
$CRATE = { version = "=$VERSION", default-features = false }

[workspace]
EOF
: >"$work/fetch/src/lib.rs"
if ! (cd "$work/fetch" && { cargo fetch --quiet || cargo fetch --quiet --offline; }); then
  echo "check.sh: could not fetch $CRATE $VERSION through cargo (registry unreachable and not in the cache?)" >&2
  exit 2
fi
manifest=$(cd "$work/fetch" && cargo metadata --format-version 1 --offline --quiet |
  grep -o "\"manifest_path\":\"[^\"]*/$CRATE-$VERSION/Cargo.toml\"" | head -n 1 | cut -d '"' -f 4)
if [[ -z $manifest || ! -f $manifest ]]; then
  echo "check.sh: cargo did not report where $CRATE $VERSION was unpacked" >&2
  exit 2
fi
published=$work/a
mkdir "$published"
cp -R "$(dirname "$manifest")/." "$published/"
rm -f "$published/.cargo-ok"
for f in "${DROPPED[@]}"; do
  if [[ ! -e $published/$f ]]; then
    echo "check.sh: '$f' (in DROPPED) is not in the published $CRATE $VERSION: update DROPPED in $0" >&2
    exit 1
  fi
  rm -rf "${published:?}/$f"
done

# --- --rebase: the published crate with the diff applied, as the new vendored copy ----
if [[ $mode == rebase ]]; then
  if command -v git >/dev/null && [[ -n $(git -C "$here" status --porcelain -- "$vendored" 2>/dev/null) ]]; then
    echo "check.sh: patches/$CRATE has uncommitted changes: commit or stash them first" >&2
    exit 2
  fi
  rm -rf "$vendored"
  cp -R "$published" "$vendored"
  if patch -p1 --batch --merge --no-backup-if-mismatch -d "$vendored" <"$diff_file"; then
    echo "check.sh: patches/$CRATE is now $CRATE $VERSION + patches/$CRATE.diff, applied cleanly"
  else
    echo "check.sh: patches/$CRATE is now $CRATE $VERSION + patches/$CRATE.diff with conflicts:" >&2
    echo "resolve the <<<<<<< markers in the files above, then run patches/check.sh --write" >&2
    exit 1
  fi
  echo "next: build, then patches/check.sh --write and cargo test --release --test kernels"
  exit 0
fi

# --- --write: the diff from the published crate to the vendored copy ----------------
files() { (cd "$1" && find . -type f | sed 's|^\./||'); }
udiff() { # label-a label-b file-a file-b: a unified diff, exit status 0 when they differ
  local rc=0
  diff -u --label "$1" --label "$2" "$3" "$4" || rc=$?
  [[ $rc -eq 1 ]] || { echo "check.sh: diff failed on $3 $4" >&2; exit 2; }
}
if [[ $mode == write ]]; then
  {
    echo "The vendored $CRATE (patches/$CRATE) against the published $CRATE $VERSION."
    echo "Written by patches/check.sh --write; do not edit by hand. Apply with patch -p1"
    echo "inside a copy of the published crate from which check.sh's DROPPED files are removed."
    echo
    { files "$published"; files "$vendored"; } | sort -u | while IFS= read -r f; do
      if [[ -f $published/$f && -f $vendored/$f ]]; then
        cmp -s "$published/$f" "$vendored/$f" || udiff "a/$f" "b/$f" "$published/$f" "$vendored/$f"
      elif [[ -f $vendored/$f ]]; then
        udiff /dev/null "b/$f" /dev/null "$vendored/$f"
      else
        udiff "a/$f" /dev/null "$published/$f" /dev/null
      fi
    done
  } >"$work/new.diff"
  mv "$work/new.diff" "$diff_file"
  echo "check.sh: wrote patches/$CRATE.diff ($(wc -l <"$diff_file") lines)"
fi

# --- check: published + diff == vendored ---------------------------------------------
if ! patch -p1 --batch --silent --fuzz=0 --no-backup-if-mismatch -d "$published" <"$diff_file" >"$work/patch.log" 2>&1; then
  cat "$work/patch.log" >&2
  echo "check.sh: FAILED: patches/$CRATE.diff does not apply to the published $CRATE $VERSION" >&2
  exit 1
fi
if ! diff -r "$published" "$vendored" >"$work/diff.log" 2>&1; then
  sed -e "s|$published|published+diff|g" -e "s|$vendored|patches/$CRATE|g" "$work/diff.log" | head -n 60 >&2
  echo "check.sh: FAILED: patches/$CRATE differs from the published $CRATE $VERSION + patches/$CRATE.diff." >&2
  echo "If the change to patches/$CRATE is intended, run patches/check.sh --write and commit patches/$CRATE.diff." >&2
  exit 1
fi
echo "check.sh: patches/$CRATE == published $CRATE $VERSION + patches/$CRATE.diff ($(grep -c '^+++ ' "$diff_file") files changed)"
