#!/usr/bin/env bash
# One command from a fresh checkout to an orchestrator that accepted a webhook:
#   1. builds kici-admin (release);
#   2. without $KICI_DATABASE_URL, starts a private PostgreSQL from the system's server binaries
#      (installing the package when missing) with its data in .kici-quickstart/pgdata;
#   3. installs an independent-mode instance in .kici-quickstart/instance with filesystem storage
#      (`kici-admin orchestrator install`, secrets generated once and kept in its env file); the
#      instance is registered in .kici-quickstart/config (KICI_CONFIG_ROOT), never host-wide;
#   4. starts it detached (`kici-admin orchestrator start`) and waits until /ready answers;
#   5. adds a demo generic source (org "demo", name "hello", HMAC-signed) and sends it a signed
#      webhook, showing the 202 and the delivery recorded in event_log.
# Running it again reuses everything (same instance, same source, a new delivery).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. scripts/lib/common.sh
self=$PWD/scripts/quickstart.sh

usage() {
  cat <<USAGE
Usage: scripts/quickstart.sh [start|stop|clean|-h|--help]

  (none), start  build kici-admin, start a private PostgreSQL (unless \$KICI_DATABASE_URL is
                 set) and an orchestrator on http://127.0.0.1:\${KICI_PORT:-4000}, add a demo
                 source and send it a signed webhook
  stop           stop the orchestrator and the private PostgreSQL (everything is kept)
  clean          stop, then remove the quickstart's folder (instance, secrets, database data)
  -h, --help     print this help and start nothing

Environment: KICI_PORT (default 4000), KICI_DATABASE_URL (an existing PostgreSQL instead of the
private one), KICI_QUICKSTART_DIR (default ./.kici-quickstart), KICI_QUICKSTART_PG_PORT
(default 54329), KICI_QUICKSTART_BIN (a kici-admin to use instead of building one).
USAGE
}

action=start
case $# in
  0) ;;
  1) action=$1 ;;
  *) usage >&2; die "one argument at most, got $#: $*" ;;
esac
case $action in
  start | stop | clean) ;;
  -h | --help | help) usage; exit 0 ;;
  *) usage >&2; die "unknown argument: $action" ;;
esac

state=${KICI_QUICKSTART_DIR:-$PWD/.kici-quickstart}
instance=$state/instance
name=kici-quickstart
port=${KICI_PORT:-4000}
pg_port=${KICI_QUICKSTART_PG_PORT:-54329}
target_dir=${CARGO_TARGET_DIR:-$PWD/target}
bin=${KICI_QUICKSTART_BIN:-$target_dir/release/kici-admin}
# The instance index lives in the quickstart's folder: nothing is registered host-wide, so
# `clean` (removing the folder) leaves nothing behind.
host_index=${KICI_CONFIG_ROOT:-}
if [ -n "$host_index" ]; then host_index=$host_index/instances.json
elif is_root; then host_index=/etc/kici/instances.json
else host_index=${HOME:-/nonexistent}/.config/kici/instances.json; fi
export KICI_CONFIG_ROOT=$state/config

# The PostgreSQL data folder: in the state folder, unless (as root) the unprivileged cluster
# owner cannot reach it there.
pg_data_dir() {
  local data=$state/pgdata
  if is_root && ! setpriv --reuid="$KICI_PG_USER" --regid="$KICI_PG_USER" --clear-groups -- test -x "$(dirname "$state")" 2>/dev/null; then
    data=/var/tmp/kici-quickstart-$(id -u)/pgdata
  fi
  printf '%s\n' "$data"
}

stop() {
  if [ -x "$bin" ] && [ -f "$instance/.kici-orchestrator.json" ]; then
    "$bin" orchestrator stop --instance-dir "$instance"
  fi
  if bindir="$(pg_bindir)" && [ -f "$(pg_data_dir)/PG_VERSION" ]; then
    pg_cluster_stop "$bindir" "$(pg_data_dir)"
    log "private PostgreSQL stopped ($(pg_data_dir))"
  fi
}

if [ "$action" = stop ]; then
  stop
  exit 0
fi
if [ "$action" = clean ]; then
  stop
  # Quickstarts before this one registered the instance host-wide: forget that entry too.
  if [ -x "$bin" ] && [ -f "$instance/.kici-orchestrator.json" ] && [ -f "$host_index" ] &&
    grep -qF "\"instanceDir\": \"$instance\"" "$host_index"; then
    KICI_CONFIG_ROOT=$(dirname "$host_index") "$bin" orchestrator uninstall --instance-dir "$instance" --yes >/dev/null
    log "removed the host-wide registration of $instance ($host_index)"
  fi
  pg_data=$(pg_data_dir)
  case $pg_data in
    "$state"/*) ;;
    *) [ -d "$pg_data" ] && rm -rf "$pg_data" && log "removed $pg_data" ;;
  esac
  rm -rf "$state"
  log "removed $state"
  exit 0
fi

if [ -z "${KICI_QUICKSTART_BIN:-}" ]; then
  command -v cargo >/dev/null 2>&1 || die "cargo not found: install Rust (https://rustup.rs) first"
  log "+ cargo build --release"
  cargo build --release
fi
command -v curl >/dev/null 2>&1 || die "curl not found: install it (apt-get install curl)"
command -v openssl >/dev/null 2>&1 || die "openssl not found: install it (apt-get install openssl); it signs the demo webhook"
mkdir -p "$state"
chmod 700 "$state"
umask 077

if [ -z "${KICI_DATABASE_URL:-}" ]; then
  bindir="$(ensure_postgres)"
  ensure_pg_user
  pg_data=$(pg_data_dir)
  mkdir -p "$(dirname "$pg_data")"
  is_root && chmod 711 "$state"
  pg_cluster_start "$bindir" "$pg_data" "$pg_port"
  KICI_DATABASE_URL="postgresql://postgres@127.0.0.1:$pg_port/postgres"
  log "PostgreSQL running on 127.0.0.1:$pg_port (data: $pg_data)"
fi

# Secrets from an earlier quickstart (before instances existed) are kept: sources stored with
# that key stay readable.
legacy=()
[ -s "$state/secret.key" ] && legacy+=(--secret-key "@$state/secret.key")
[ -s "$state/admin.token" ] && legacy+=(--admin-token "@$state/admin.token")

# --force: the quickstart owns this instance, so the current flags win (secrets are kept).
log "+ kici-admin orchestrator install --name $name --instance-dir $instance --mode independent …"
"$bin" orchestrator install --name "$name" --instance-dir "$instance" --supervisor process \
  --mode independent --database-url "$KICI_DATABASE_URL" --port "$port" --bind-address 127.0.0.1 \
  --storage-type filesystem --storage-path "$instance/data/storage" --force "${legacy[@]}"

running=$("$bin" orchestrator status --instance-dir "$instance" --json | sed -n 's/^  "running": \(true\|false\),*$/\1/p')
if [ "$running" != true ] && (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
  die "port $port is already in use by another program: run KICI_PORT=4100 $self"
fi
log "+ kici-admin orchestrator start --instance-dir $instance"
"$bin" orchestrator start --instance-dir "$instance"

env_file=$instance/$name.env
# The CLI takes the admin token from the instance's env file (KICI_BOOTSTRAP_ADMIN_TOKEN).
admin() { "$bin" --instance-dir "$instance" "$@"; }

secret_file=$state/demo-webhook.secret
[ -s "$secret_file" ] || random_hex32 >"$secret_file"
if admin source list --org demo --json | grep -q '"name": "hello"'; then
  log "demo source demo/hello exists already"
else
  log "+ kici-admin source add generic --org demo --name hello --secret @$secret_file --event-type-header X-Event-Type"
  admin source add generic --org demo --name hello --secret "@$secret_file" --event-type-header X-Event-Type
fi

body="{\"event\":\"quickstart.ping\",\"sentAt\":\"$(date -u +%Y-%m-%dT%H:%M:%SZ)\"}"
signature=$(printf '%s' "$body" | openssl dgst -sha256 -hmac "$(cat "$secret_file")" | sed 's/^.*= //')
url=http://127.0.0.1:$port/webhook/demo/generic/hello
log "+ curl -X POST $url (X-Signature-256: sha256=<HMAC of the body>)"
answer=$(curl -sS -o - -w '\n%{http_code}' -X POST "$url" -H 'Content-Type: application/json' \
  -H 'X-Event-Type: quickstart.ping' -H "X-Signature-256: sha256=$signature" --data-binary "$body")
code=${answer##*$'\n'}
reply=${answer%$'\n'*}
echo "HTTP $code $reply"
[ "$code" = 202 ] || die "the orchestrator answered $code instead of 202 (log: kici-admin orchestrator logs --instance-dir $instance)"
delivery=$(printf '%s' "$reply" | sed -n 's/.*"deliveryId":"\([^"]*\)".*/\1/p')
if command -v psql >/dev/null 2>&1; then
  echo "Recorded delivery (event_log):"
  psql "$KICI_DATABASE_URL" -X -P pager=off -c \
    "SELECT delivery_id, event, status, payload_size_bytes AS bytes, received_at FROM event_log WHERE delivery_id = '${delivery//\'/}'"
else
  echo "Recorded delivery: $delivery (install psql to see the event_log row)"
fi

q() { printf '%q' "$1"; }
# The variables that locate this quickstart, so the printed stop/clean lines find it again.
again=
for v in KICI_QUICKSTART_DIR KICI_QUICKSTART_BIN KICI_QUICKSTART_PG_PORT; do
  [ -n "${!v:-}" ] && again+="$v=$(q "${!v}") "
done
cat <<MSG

  KiCI orchestrator "$name" is running (independent mode): http://127.0.0.1:$port
  Admin token:  KICI_BOOTSTRAP_ADMIN_TOKEN in $env_file (the CLI reads it from there)
  Try:          $(q "$bin") source list --org demo --instance-dir $(q "$instance")
  Status:       $(q "$bin") orchestrator status --instance-dir $(q "$instance")
  Logs:         $(q "$bin") orchestrator logs -f --instance-dir $(q "$instance")
  Stop:         $again$(q "$self") stop
  Remove all:   $again$(q "$self") clean

MSG
