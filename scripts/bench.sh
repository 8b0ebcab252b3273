#!/usr/bin/env bash
# Benchmarks, never tests: prints figures with their medians over repeated runs.
#
#   scripts/bench.sh startup [RUNS]   start-to-ready time on a migrated database, and idle RSS,
#                                      against `psql -c 'SELECT 1'` measured in the same run
#   scripts/bench.sh cli [RUNS]       `kici-admin source list` round trip (process start to exit)
#                                      against `curl` of the same admin route in the same run
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. scripts/lib/common.sh

what=${1:-}
shift || true

# KICI_BENCH_BIN=target/x86_64-unknown-linux-musl/release/kici-admin measures another build
# (e.g. the static one from scripts/build-static.sh).
build_release() {
  if [ -n "${KICI_BENCH_BIN:-}" ]; then
    printf '%s\n' "$(realpath "$KICI_BENCH_BIN")"
    return
  fi
  log "+ cargo build --release"
  cargo build --release >&2
  printf '%s\n' "$PWD/target/release/kici-admin"
}

# A private PostgreSQL for one benchmark run, stopped on exit.
start_bench_pg() {
  bindir="$(ensure_postgres)"
  ensure_pg_user
  bench_dir=$(mktemp -d /tmp/kici-bench.XXXXXX)
  chmod 711 "$bench_dir"
  pg_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  pg_cluster_start "$bindir" "$bench_dir/pg" "$pg_port"
  trap 'pg_cluster_stop "$bindir" "$bench_dir/pg"; rm -rf "$bench_dir"' EXIT
  db_url="postgresql://postgres@127.0.0.1:$pg_port/postgres"
}

bench_startup() {
  local runs=${1:-15}
  local bin
  bin=$(build_release)
  start_bench_pg
  "$bin" db migrate --database-url "$db_url" >/dev/null
  python3 - "$bin" "$db_url" "$runs" "$bindir/psql" <<'PY'
import os, socket, statistics, subprocess, sys, time

bin_, db_url, runs, psql = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

def ready(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as c:
            c.sendall(b"GET /ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return c.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False

def rss_kib(pid, field="VmRSS"):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])

env = {k: v for k, v in os.environ.items() if not k.startswith("KICI_")}
env.update(KICI_MODE="independent", KICI_DATABASE_URL=db_url, KICI_SECRET_KEY="11" * 32,
           KICI_BIND_ADDRESS="127.0.0.1", KICI_BOOTSTRAP_ADMIN_TOKEN="22" * 32, KICI_LOG_LEVEL="warn")
starts, rsss, hwms, threads = [], [], [], []
for i in range(runs):
    port = free_port()
    env["KICI_PORT"] = str(port)
    t0 = time.perf_counter()
    p = subprocess.Popen([bin_, "orchestrator", "run"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not ready(port):
        if p.poll() is not None:
            sys.exit(f"daemon exited with {p.returncode}")
        if time.perf_counter() - t0 > 10:
            p.kill(); sys.exit("daemon not ready within 10 s")
        time.sleep(0.001)
    starts.append((time.perf_counter() - t0) * 1000)
    time.sleep(2)  # idle
    rsss.append(rss_kib(p.pid) / 1024); hwms.append(rss_kib(p.pid, "VmHWM") / 1024)
    threads.append(len(os.listdir(f"/proc/{p.pid}/task")))
    p.terminate(); p.wait(10)

base = []
for i in range(runs):
    t0 = time.perf_counter()
    subprocess.run([psql, db_url, "-qAtc", "SELECT 1"], check=True, stdout=subprocess.DEVNULL)
    base.append((time.perf_counter() - t0) * 1000)

med = statistics.median
print(f"startup ({runs} runs, medians; min..max)")
print(f"  start-to-ready      {med(starts):7.1f} ms   ({min(starts):.1f}..{max(starts):.1f})   target <= 100 ms")
print(f"  idle RSS            {med(rsss):7.2f} MiB  ({min(rsss):.2f}..{max(rsss):.2f})   target <= 12 MiB")
print(f"  peak RSS (VmHWM)    {med(hwms):7.2f} MiB")
print(f"  threads when idle   {med(threads):7.0f}")
print(f"  baseline: psql -c 'SELECT 1' (process start + connect + query) {med(base):.1f} ms")
print(f"  ratio start-to-ready / psql baseline: {med(starts) / med(base):.2f}x")
PY
}

# Starts a release daemon on the bench database; sets daemon_url and daemon_pid.
start_bench_daemon() {
  local bin=$1 port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  env -u KICI_ADMIN_URL -u KICI_ADMIN_TOKEN KICI_MODE=independent KICI_DATABASE_URL="$db_url" \
    KICI_SECRET_KEY="$(random_hex32)" KICI_BOOTSTRAP_ADMIN_TOKEN="$bench_token" KICI_PORT="$port" \
    KICI_BIND_ADDRESS=127.0.0.1 KICI_LOG_LEVEL=warn "$bin" orchestrator run >/dev/null 2>&1 &
  daemon_pid=$!
  daemon_url="http://127.0.0.1:$port"
  trap 'kill $daemon_pid 2>/dev/null; pg_cluster_stop "$bindir" "$bench_dir/pg"; rm -rf "$bench_dir"' EXIT
  for _ in $(seq 200); do
    curl -sf "$daemon_url/ready" >/dev/null && return 0
    sleep 0.05
  done
  die "daemon did not become ready"
}

bench_cli() {
  local runs=${1:-30} bin
  bin=$(build_release)
  start_bench_pg
  bench_token=$(random_hex32)
  start_bench_daemon "$bin"
  for i in 1 2 3; do
    KICI_ADMIN_URL=$daemon_url KICI_ADMIN_TOKEN=$bench_token "$bin" source add generic --org bench \
      --name "source-$i" --verification none >/dev/null
  done
  python3 - "$bin" "$daemon_url" "$bench_token" "$runs" <<'PY'
import os, statistics, subprocess, sys, time
bin_, url, token, runs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
env = dict(os.environ, KICI_ADMIN_URL=url, KICI_ADMIN_TOKEN=token)
def timed(cmd):
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
        out.append((time.perf_counter() - t0) * 1000)
    return out
cli = timed([bin_, "source", "list", "--org", "bench"])
curl = timed(["curl", "-sf", "-H", f"Authorization: Bearer {token}", f"{url}/api/v1/admin/generic-sources?orgId=bench"])
med = statistics.median
print(f"cli ({runs} runs, medians; min..max)")
print(f"  kici-admin source list --org bench   {med(cli):6.1f} ms  ({min(cli):.1f}..{max(cli):.1f})   target <= 50 ms")
print(f"  baseline: curl of the same route     {med(curl):6.1f} ms")
print(f"  ratio kici-admin / curl: {med(cli) / med(curl):.2f}x   (reference CLI: ~3500 ms)")
PY
}

case "$what" in
  startup) bench_startup "$@" ;;
  cli) bench_cli "$@" ;;
  *) echo "usage: scripts/bench.sh startup|cli [RUNS]" >&2; exit 2 ;;
esac
