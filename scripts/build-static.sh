#!/usr/bin/env bash
# Builds the fully static kici-admin (x86_64 musl, static-pie) that runs on any x86_64 Linux:
# target/x86_64-unknown-linux-musl/release/kici-admin. Installs the musl target and a musl C
# compiler (ring has C and assembly) when missing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. scripts/lib/common.sh

target=x86_64-unknown-linux-musl
if ! rustup target list --installed 2>/dev/null | grep -qx "$target"; then
  log "+ rustup target add $target"
  rustup target add "$target"
fi
if ! command -v x86_64-linux-musl-gcc >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1; then
    log "+ apt-get install musl-tools"
    as_root apt-get update >&2 || true
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends musl-tools >&2 \
      || export CC_x86_64_unknown_linux_musl=gcc
  else
    # ring's C needs no libc headers: the host gcc builds it for musl (reference/crates.md §3.1).
    export CC_x86_64_unknown_linux_musl=gcc
  fi
fi
log "+ cargo build --release --target $target"
cargo build --release --target "$target"
bin=target/$target/release/kici-admin
file "$bin" 2>/dev/null || true
ls -l "$bin"
