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
