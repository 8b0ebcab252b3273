# Shared by scripts/*.sh (sourced, not run): logging, root helpers, and a private PostgreSQL
# cluster started from the system's server binaries. initdb refuses to run as root, so when
# root the cluster runs as the unprivileged system user $KICI_PG_USER (created if missing).

KICI_PG_USER=${KICI_PG_USER:-kici-test}
# A setting of these scripts, not of kici-admin, which refuses unknown KICI_* variables: never
# passed on to the daemons and CLIs the scripts start.
export -n KICI_PG_USER

log() { printf '[%s] %s\n' "$(basename "$0")" "$*" >&2; }
die() { log "error: $*"; exit 1; }
is_root() { [ "$(id -u)" -eq 0 ]; }

as_root() {
  if is_root; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    die "need root to run: $*"
  fi
}

# The directory holding initdb/pg_ctl: `pg_config --bindir` if complete, else the highest
# /usr/lib/postgresql/*/bin (the same search as tests/it/support/pg.rs).
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

# Installs the PostgreSQL server package when its binaries are missing; prints the bindir.
ensure_postgres() {
  local dir
  if ! dir="$(pg_bindir)"; then
    log "PostgreSQL server binaries not found: installing the postgresql package"
    as_root apt-get update >&2
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql >&2
    # The package may start a system cluster on 5432; nothing here uses it.
    dir="$(pg_bindir)" || die "postgresql installed but no initdb found"
  fi
  printf '%s\n' "$dir"
}

ensure_pg_user() {
  if is_root && ! id -u "$KICI_PG_USER" >/dev/null 2>&1; then
    log "+ useradd --system --no-create-home --shell /usr/sbin/nologin $KICI_PG_USER"
    useradd --system --no-create-home --shell /usr/sbin/nologin "$KICI_PG_USER"
  fi
}

# Runs a command as the cluster's owner (unprivileged when we are root).
as_pg_user() {
  if is_root; then
    setpriv --reuid="$KICI_PG_USER" --regid="$KICI_PG_USER" --clear-groups -- "$@"
  else
    "$@"
  fi
}

# pg_cluster_start BINDIR DATADIR PORT: initdb on first use, then start on 127.0.0.1:PORT.
pg_cluster_start() {
  local bindir=$1 data=$2 port=$3
  mkdir -p "$data"
  is_root && chown "$KICI_PG_USER:" "$data"
  chmod 700 "$data"
  if [ ! -f "$data/PG_VERSION" ]; then
    log "+ initdb $data"
    as_pg_user "$bindir/initdb" -D "$data" -A trust -U postgres -E UTF8 --locale=C >/dev/null
  fi
  if as_pg_user "$bindir/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    return 0
  fi
  as_pg_user "$bindir/pg_ctl" -D "$data" -w -l "$data/server.log" \
    -o "-p $port -c listen_addresses=127.0.0.1 -k $data" start >/dev/null \
    || { tail -n 20 "$data/server.log" >&2; die "PostgreSQL did not start (log: $data/server.log)"; }
}

pg_cluster_stop() {
  local bindir=$1 data=$2
  as_pg_user "$bindir/pg_ctl" -D "$data" -m fast -w stop >/dev/null 2>&1 || true
}

# A 64-hex random value (secret keys, admin tokens) without needing openssl.
random_hex32() {
  od -An -tx1 -N32 /dev/urandom | tr -d ' \n'
}

# The SigV4-verifying S3 server the storage tests start themselves (tests/it/support/s3.rs): s3s-fs
# from crates.io (an S3 server that verifies SigV4 signatures and expiry). Installed once with
# cargo; prints its path.
S3S_FS_VERSION=${S3S_FS_VERSION:-0.14.1}
ensure_s3s_fs() {
  local bin
  for bin in "${S3S_FS_BIN:-}" "$(command -v s3s-fs 2>/dev/null || true)" \
             "${CARGO_HOME:-$HOME/.cargo}/bin/s3s-fs"; do
    if [ -n "$bin" ] && [ -x "$bin" ]; then
      printf '%s\n' "$bin"
      return 0
    fi
  done
  log "+ cargo install s3s-fs --version $S3S_FS_VERSION --features binary --locked (once; a few minutes)"
  cargo install s3s-fs --version "$S3S_FS_VERSION" --features binary --locked >&2
  printf '%s\n' "${CARGO_HOME:-$HOME/.cargo}/bin/s3s-fs"
}

# ensure_command NAME PACKAGE: installs the Debian package when the command is missing.
ensure_command() {
  command -v "$1" >/dev/null 2>&1 && return 0
  log "$1 not found: installing the $2 package"
  as_root apt-get update >&2
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$2" >&2
}

# Where cargo puts what it builds: CARGO_TARGET_DIR or the build.target-dir setting if set.
cargo_target_dir() {
  if [ -z "${bench_target_dir:-}" ]; then
    bench_target_dir=$(cargo metadata --format-version 1 --no-deps \
      | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
  fi
  printf '%s\n' "$bench_target_dir"
}
