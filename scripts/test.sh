#!/usr/bin/env bash
# The project's single test command: installs what the tests need, then runs every test.
# Works on a fresh Debian/Ubuntu machine as root (CI); extra args go to `cargo test`,
# e.g. scripts/test.sh pg_harness -- --nocapture
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

log() { printf '[test.sh] %s\n' "$*" >&2; }

is_root() { [ "$(id -u)" -eq 0 ]; }

as_root() {
  if is_root; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    log "need root to run: $*"
    return 1
  fi
}

# --- PostgreSQL server binaries (tests/support/pg.rs starts its own clusters) ---
# Same search as the harness: `pg_config --bindir` if it has initdb, else the highest
# /usr/lib/postgresql/*/bin.
pg_bindir() {
  local dir
  if dir="$(pg_config --bindir 2>/dev/null)" && [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then
    printf '%s\n' "$dir"
    return 0
  fi
  for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    if [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then
      printf '%s\n' "$dir"
      return 0
    fi
  done
  return 1
}

if ! bindir="$(pg_bindir)"; then
  log "PostgreSQL server binaries not found: installing the postgresql package"
  log "+ apt-get update"
  as_root apt-get update
  log "+ DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql
  # The package may create and start a system cluster on 5432; the tests never use it.
  bindir="$(pg_bindir)" || { log "postgresql installed but no initdb found"; exit 1; }
fi
log "PostgreSQL server binaries: $bindir ($("$bindir/postgres" --version))"

# initdb/postgres refuse to run as root: the harness runs them as this user when root.
if is_root && ! id -u kici-test >/dev/null 2>&1; then
  log "+ useradd --system --no-create-home --shell /usr/sbin/nologin kici-test"
  useradd --system --no-create-home --shell /usr/sbin/nologin kici-test
fi

# --- S3 test server (added by the storage work) ---

# --- tests ---
command -v cargo >/dev/null 2>&1 || { log "cargo not found on PATH"; exit 1; }
log "+ cargo test --all-targets $*"
status=0
cargo test --all-targets "$@" || status=$?
exit "$status"
