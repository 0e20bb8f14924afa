# Shared by the benchmark scripts: build the release binary, start a node pinned to one core,
# wait for its listening line. Sourced, not run.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BIN="$ROOT/target/release/rempart"
SERVER_CORE="${SERVER_CORE:-1}"
CLIENT_CORE="${CLIENT_CORE:-0}"
WORK="$(mktemp -d /tmp/rempart-bench.XXXXXX)"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

build() {
    (cd "$ROOT" && cargo build --release --quiet -p rempart "$@")
    # Write back the build's dirty pages now, not during the first measurement's fsyncs.
    sync
}

# start_node NAME [serve args...]: starts `rempart serve` pinned to SERVER_CORE; sets
# NAME_PUBLIC and NAME_INGEST to its addresses.
start_node() {
    local name="$1"; shift
    local out="$WORK/$name.out"
    rm -f "$out"
    # Addresses by variable, so that flags in "$@" may override them.
    REMPART_INGEST_TOKEN=bench-token REMPART_LOG=warn REMPART_PUBLIC=127.0.0.1:0 REMPART_INGEST=127.0.0.1:0 \
        taskset -c "$SERVER_CORE" "$BIN" serve --data "$WORK/$name-data-$RANDOM" \
        --public-threads 1 "$@" >"$out" 2>"$WORK/$name.err" &
    PIDS+=($!)
    for _ in $(seq 1 600); do
        if grep -q '^rempart listening' "$out" 2>/dev/null; then break; fi
        sleep 0.1
    done
    local line; line="$(grep '^rempart listening' "$out")"
    local public="${line#*public=}"; public="${public%% *}"
    local ingest="${line#*ingest=}"; ingest="${ingest%% *}"
    printf -v "${name}_PUBLIC" '%s' "$public"
    printf -v "${name}_INGEST" '%s' "$ingest"
}

# cpu_cgroup_create NAME CORES [PERIOD_US=10000] [WEIGHT=1]: a CPU cgroup limited to CORES
# (e.g. 0.25; "max" for no limit) with that CFS period, cgroup v2 (`cpu.max`) or v1
# (`cpu.cfs_quota_us`/`cpu.cfs_period_us`), whichever the machine has, and WEIGHT times the
# default CPU weight (`cpu.weight`/`cpu.shares`) against other work on the machine, so that its
# quota, not a busy neighbour, is what limits it. Sets CGROUP_DIR and CGROUP_VERSION. Needs root.
cpu_cgroup_create() {
    local name="$1" cores="$2" period="${3:-10000}" weight="${4:-1}"
    local quota=-1
    [ "$cores" = max ] || quota="$(awk -v c="$cores" -v p="$period" 'BEGIN { printf "%d", c * p }')"
    if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
        CGROUP_VERSION=2
        grep -qw cpu /sys/fs/cgroup/cgroup.subtree_control || echo +cpu >/sys/fs/cgroup/cgroup.subtree_control
        CGROUP_DIR="/sys/fs/cgroup/$name"
        mkdir -p "$CGROUP_DIR"
        if [ "$quota" = -1 ]; then echo "max $period" >"$CGROUP_DIR/cpu.max"; else echo "$quota $period" >"$CGROUP_DIR/cpu.max"; fi
        echo $((100 * weight)) >"$CGROUP_DIR/cpu.weight"
    else
        local root
        for root in /sys/fs/cgroup/cpu /sys/fs/cgroup/cpu,cpuacct; do
            [ -f "$root/cpu.cfs_quota_us" ] && break
        done
        [ -f "$root/cpu.cfs_quota_us" ] || { echo "no cgroup v1 cpu controller or cgroup v2 found" >&2; return 1; }
        CGROUP_VERSION=1
        CGROUP_DIR="$root/$name"
        mkdir -p "$CGROUP_DIR"
        echo "$period" >"$CGROUP_DIR/cpu.cfs_period_us"
        echo "$quota" >"$CGROUP_DIR/cpu.cfs_quota_us"
        echo $((1024 * weight)) >"$CGROUP_DIR/cpu.shares"
    fi
}

# cpu_cgroup_remove [DIR=CGROUP_DIR]: removes the cgroup once its processes are gone.
cpu_cgroup_remove() {
    local dir="${1:-${CGROUP_DIR:-}}"
    [ -n "$dir" ] && [ -d "$dir" ] || return 0
    for _ in $(seq 1 50); do
        rmdir "$dir" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "could not remove $dir" >&2
}

# cpu_cgroup_launcher PATH: writes an executable that joins CGROUP_DIR, then execs its arguments
# (same process id: `kill` and `/proc` keep working on it).
cpu_cgroup_launcher() {
    printf '#!/bin/sh\necho $$ >"%s/cgroup.procs" || exit 1\nexec "$@"\n' "$CGROUP_DIR" >"$1"
    chmod 755 "$1"
}

# cpu_cgroup_throttling: "periods throttled" of CGROUP_DIR so far (both versions).
cpu_cgroup_throttling() {
    awk '$1 == "nr_periods" { p = $2 } $1 == "nr_throttled" { t = $2 } END { print p + 0, t + 0 }' "$CGROUP_DIR/cpu.stat"
}

# start_nginx_limit_req UPSTREAM [LAUNCHER...]: nginx (one worker, pinned to SERVER_CORE) on
# 127.0.0.1:18081, `limit_req` per address (50 r/s, burst 20), proxying to UPSTREAM; run through
# LAUNCHER when given (e.g. a cgroup launcher). Sets NGINX_ADDR and NGINX_PID.
start_nginx_limit_req() {
    local upstream="$1"; shift
    command -v nginx >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null; }
    chmod 755 "$WORK"
    cat >"$WORK/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log crit;
worker_rlimit_nofile 65536;
events { worker_connections 16384; }
http {
    access_log off;
    limit_req_zone \$binary_remote_addr zone=perip:10m rate=50r/s;
    limit_req_status 429;
    upstream rempart { server $upstream; keepalive 64; }
    server {
        listen 127.0.0.1:18081;
        location / {
            limit_req zone=perip burst=20 nodelay;
            proxy_pass http://rempart;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
CONF
    "$@" taskset -c "$SERVER_CORE" nginx -c "$WORK/nginx.conf" &
    NGINX_PID=$!
    PIDS+=($NGINX_PID)
    for _ in $(seq 1 50); do
        (exec 3<>/dev/tcp/127.0.0.1/18081) 2>/dev/null && break
        sleep 0.1
    done
    NGINX_ADDR=127.0.0.1:18081
}

# cpu_s PID...: user + system CPU seconds of these processes and their reaped children so far.
cpu_s() {
    local total=0 pid
    for pid in "$@"; do
        [ -r "/proc/$pid/stat" ] || continue
        total=$(awk -v t="$total" '{ sub(/^.*\) /, ""); print t + ($12 + $13 + $14 + $15) / 100 }' "/proc/$pid/stat")
    done
    echo "$total"
}

# machine_busy_s: CPU seconds all cores spent busy so far (user, nice, system, irq, softirq, steal).
machine_busy_s() {
    awk '$1 == "cpu" { print ($2 + $3 + $4 + $7 + $8 + $9) / 100 }' /proc/stat
}

# generate N [PREFIX=scale]: N parcels as NDJSON event lines for `rempart import`: parcel i is
# 5S + 10 digits + check digit, with 2 to 4 events (3 on average), ids PREFIX:i:j.
generate() {
    python3 - "$1" "${2:-scale}" <<'PY'
import sys
n, prefix = int(sys.argv[1]), sys.argv[2]
routes = [("PC1", "ET1", "DI1"), ("PC1", "ET1", "MD2", "DI1"), ("PC1", "ET1"), ("DR1", "PC1", "ET1")]
places = ["Paris 15", "Lyon PFC", "Marseille", "Lille CTC", "Bordeaux", "Nantes"]
out = sys.stdout
for i in range(n):
    d = f"{i:010d}"
    s = sum(int(c) * (3 if k % 2 == 0 else 1) for k, c in enumerate(reversed(d)))
    tn = f"5S{d}{(10 - s % 10) % 10}"
    for j, code in enumerate(routes[i % 4]):
        out.write(f'{{"event_id":"{prefix}:{i}:{j}","tracking_number":"{tn}","code":"{code}",'
                  f'"occurred_at":"2025-12-{10 + j:02d}T{(i % 14) + 6:02d}:{i % 60:02d}:00Z",'
                  f'"location":"{places[(i + j) % 6]}","product":"colissimo"}}\n')
PY
}

# pg_cpu_s: CPU seconds so far of the PostgreSQL cluster in $PG_DIR (scripts/pg-temp): the
# postmaster, its reaped children included, and its live children. One read of them all: a
# backend that exits meanwhile is skipped, its time moves to the postmaster's reaped children
# (cpu_s above would restart its sum from 0 should a process vanish between its check and read).
pg_cpu_s() {
    local pm pid files=(); pm="$(head -1 "$PG_DIR/data/postmaster.pid")"
    for pid in "$pm" $(ps -o pid= --ppid "$pm"); do files+=("/proc/$pid/stat"); done
    { cat "${files[@]}" 2>/dev/null || true; } | awk '{ sub(/^.*\) /, ""); t += $12 + $13 + $14 + $15 } END { printf "%.2f", t / 100 }'
}
