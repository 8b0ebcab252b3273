#!/usr/bin/env bash
# Builds kici-admin and runs the orchestrator in the foreground in independent mode on its
# embedded defaults: a private PostgreSQL in .kici-quickstart/ started from the system's server
# binaries (installed when missing), or $KICI_DATABASE_URL when given; a generated secret key
# and admin token kept in .kici-quickstart/ so every run reuses them. Ctrl-C stops both.
#
#   scripts/quickstart.sh                 # http://127.0.0.1:4000
#   KICI_PORT=4100 scripts/quickstart.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. scripts/lib/common.sh

state=${KICI_QUICKSTART_DIR:-$PWD/.kici-quickstart}
port=${KICI_PORT:-4000}
pg_port=${KICI_QUICKSTART_PG_PORT:-54329}

command -v cargo >/dev/null 2>&1 || die "cargo not found: install Rust (https://rustup.rs) first"
log "+ cargo build --release"
cargo build --release
bin=$PWD/target/release/kici-admin

mkdir -p "$state"
chmod 700 "$state"
umask 077
[ -s "$state/secret.key" ] || random_hex32 >"$state/secret.key"
[ -s "$state/admin.token" ] || random_hex32 >"$state/admin.token"

pg_data=""
if [ -z "${KICI_DATABASE_URL:-}" ]; then
  bindir="$(ensure_postgres)"
  ensure_pg_user
  pg_data=$state/pgdata
  # The unprivileged cluster owner must be able to reach the data folder.
  if is_root && ! setpriv --reuid="$KICI_PG_USER" --regid="$KICI_PG_USER" --clear-groups -- test -x "$(dirname "$state")"; then
    pg_data=/var/tmp/kici-quickstart-$(id -u)/pgdata
    mkdir -p "$(dirname "$pg_data")"
    log "$state is not reachable by $KICI_PG_USER; keeping the PostgreSQL data in $pg_data"
  fi
  is_root && chmod 711 "$state"
  pg_cluster_start "$bindir" "$pg_data" "$pg_port"
  trap 'pg_cluster_stop "$bindir" "$pg_data"' EXIT
  export KICI_DATABASE_URL="postgresql://postgres@127.0.0.1:$pg_port/postgres"
  log "PostgreSQL running on 127.0.0.1:$pg_port (data: $pg_data)"
fi

export KICI_MODE=independent
export KICI_PORT=$port
export KICI_BIND_ADDRESS=${KICI_BIND_ADDRESS:-127.0.0.1}
export KICI_SECRET_KEY_FILE=$state/secret.key
KICI_BOOTSTRAP_ADMIN_TOKEN=$(cat "$state/admin.token")
export KICI_BOOTSTRAP_ADMIN_TOKEN
unset KICI_SECRET_KEY

cat <<MSG

  KiCI orchestrator (independent mode)
  Listening on:  http://$KICI_BIND_ADDRESS:$port   (health: /health, readiness: /ready)
  Admin token:   $KICI_BOOTSTRAP_ADMIN_TOKEN
  State:         $state (secret key, admin token$( [ -n "$pg_data" ] && printf ', PostgreSQL data' ))
  Try:           curl -s http://127.0.0.1:$port/ready
                 $bin db migrate --status --database-url '$KICI_DATABASE_URL'
  Stop:          Ctrl-C

MSG
# Not exec: the EXIT trap stops the private PostgreSQL when the orchestrator ends.
"$bin" orchestrator run
