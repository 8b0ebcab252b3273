#!/usr/bin/env bash
# Builds the fully static kici-admin that runs on any x86_64 Linux with no libc installed:
#   target/x86_64-unknown-linux-musl/release/kici-admin
# Installs the musl target and a musl C compiler (ring has C and assembly) when missing. Where
# the musl target cannot be installed it falls back, and says so, to a static glibc build
# (+crt-static): target/x86_64-unknown-linux-gnu/release/kici-admin.
#
# The binary is linked non-PIE (relocation-model=static), which `file` reports as "statically
# linked"; KICI_STATIC_PIE=1 keeps Rust's default static-pie instead (ASLR for the binary image
# too; `file` then says "static-pie linked"). Then: strip, size check (≤ 8 MiB), and `--version`
# run under `env -i` and, as root, in an empty chroot holding only the binary.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. scripts/lib/common.sh

max_bytes=$((8 * 1024 * 1024))
target_dir=${CARGO_TARGET_DIR:-$PWD/target}
rustflags="-C target-feature=+crt-static"
[ "${KICI_STATIC_PIE:-}" = 1 ] || rustflags="$rustflags -C relocation-model=static"

target=x86_64-unknown-linux-musl
if ! rustup target list --installed 2>/dev/null | grep -qx "$target"; then
  log "+ rustup target add $target"
  rustup target add "$target" || target=x86_64-unknown-linux-gnu
fi
if [ "$target" = x86_64-unknown-linux-musl ]; then
  if ! command -v x86_64-linux-musl-gcc >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1; then
      log "+ apt-get install musl-tools"
      as_root apt-get update >&2 || true
      as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends musl-tools >&2 \
        || export CC_x86_64_unknown_linux_musl=gcc
    else
      # ring's C needs no libc headers: the host gcc builds it for musl.
      export CC_x86_64_unknown_linux_musl=gcc
    fi
  fi
  export CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_RUSTFLAGS="$rustflags"
else
  log "the musl target could not be installed: building a static glibc binary (+crt-static) instead"
  export CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS="$rustflags"
fi

log "+ cargo build --release --target $target"
cargo build --release --target "$target"
bin=$target_dir/$target/release/kici-admin
# The release profile strips already; this covers builds with another profile setting.
command -v strip >/dev/null 2>&1 && strip "$bin"

description=$(file "$bin")
echo "$description"
case "$description" in
  *"statically linked"* | *"static-pie linked"*) ;;
  *) die "$bin is not statically linked" ;;
esac
size=$(stat -c %s "$bin")
echo "$bin: $size bytes ($(awk -v s="$size" 'BEGIN { printf "%.2f", s / 1048576 }') MiB, limit 8 MiB)"
[ "$size" -le "$max_bytes" ] || die "$bin is $size bytes, over the 8 MiB budget"

log "+ env -i $bin --version"
env -i "$bin" --version || die "the static binary does not run with an empty environment"
if is_root && command -v chroot >/dev/null 2>&1; then
  jail=$(mktemp -d)
  trap 'rm -rf "$jail"' EXIT
  cp "$bin" "$jail/kici-admin"
  log "+ chroot <empty folder with only kici-admin> /kici-admin --version"
  if ! out=$(env -i "$(command -v chroot)" "$jail" /kici-admin --version 2>&1); then
    case "$out" in
      *"Operation not permitted"*) log "chroot is not permitted here (no CAP_SYS_CHROOT): skipped the empty-root check" ;;
      *) die "the static binary does not run in an empty chroot: $out" ;;
    esac
  else
    echo "$out"
  fi
fi
