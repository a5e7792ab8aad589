#!/usr/bin/env bash
# Seed the fuzz corpora: every example lock, and the manifest of a small awkward tree.
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p corpus/lockfile corpus/manifest
cp ../spec/examples/*.lock ../spec/examples/bad/*.lock corpus/lockfile/
tmp=$(mktemp -d)
mkdir -p "$tmp/ds/a" && printf x > "$tmp/ds/a/b" && printf y > "$tmp/ds/a.txt" && printf z > "$tmp/ds/back\\slash"
cargo run -q --manifest-path ../Cargo.toml -- hash --manifest "$tmp/ds" > corpus/manifest/awkward.b3
rm -rf "$tmp"
