#!/usr/bin/env bash
# The project's single test command: installs what the tests need, then runs every test.
# Works on a fresh Debian/Ubuntu machine as root (CI); extra args go to `cargo test`,
# e.g. scripts/test.sh pg_harness -- --nocapture
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

. scripts/lib/common.sh

# --- PostgreSQL server binaries (tests/it/support/pg.rs starts its own clusters) ---
bindir="$(ensure_postgres)"
log "PostgreSQL server binaries: $bindir ($("$bindir/postgres" --version))"
# initdb/postgres refuse to run as root: the harness runs them as this user when root.
ensure_pg_user

# --- S3 test server: s3s-fs, which verifies SigV4 (tests/it/support/s3.rs starts one per test
# process on a free 127.0.0.1 port); curl drives presigned URLs as agents would ---
command -v cargo >/dev/null 2>&1 || { log "cargo not found on PATH"; exit 1; }
S3S_FS_BIN="$(ensure_s3s_fs)"
export S3S_FS_BIN
log "S3 test server: $S3S_FS_BIN"
ensure_command curl curl

# --- Python prometheus_client: tests/it/metrics.rs parses /metrics with its text parser ---
# (skipped at once when already importable; Debian's system Python refuses plain pip installs,
# so --break-system-packages, then the distribution's package, are the fallbacks)
if ! python3 -c 'import prometheus_client' >/dev/null 2>&1; then
  ensure_command python3 python3
  log "+ pip install prometheus_client"
  python3 -m pip install --quiet prometheus_client >&2 \
    || python3 -m pip install --quiet --break-system-packages prometheus_client >&2 \
    || { as_root apt-get update >&2 \
         && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3-prometheus-client >&2; } \
    || die "cannot install the Python prometheus_client package (tests/it/metrics.rs needs it)"
fi

# --- tests ---
log "+ cargo test --all-targets --no-fail-fast $*"
status=0
cargo test --all-targets --no-fail-fast "$@" || status=$?
exit "$status"
