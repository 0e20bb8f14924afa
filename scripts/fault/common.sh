# Shared by the fault scripts: builds the release binary and the fault client, keeps a work
# directory (removed on exit unless FAULT_KEEP=1), starts, kills and stops one node on fixed
# loopback ports, runs the ingesting client, and prints figures. Sourced, not run.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BIN="$ROOT/target/release/rempart"
CLIENT="$ROOT/target/release/examples/fault_client"
export REMPART_INGEST_TOKEN="fault-token-0123456789"
# The client's shape: CLIENTS connections, batches of PARCELS parcels × EVENTS events.
FAULT_CLIENTS="${FAULT_CLIENTS:-4}"
FAULT_PARCELS="${FAULT_PARCELS:-100}"
FAULT_EVENTS="${FAULT_EVENTS:-10}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/rempart-fault.XXXXXX")"
NODE_PID=""
CLIENT_PID=""
PROBE_PID=""
NODE_STARTS=0
NODE_PUBLIC="127.0.0.1:0"
NODE_INGEST="127.0.0.1:0"
# Arguments of `rempart serve` besides the addresses (set by each script).
NODE_ARGS=()
# Commands run on exit, last registered first (unmounts, database stops).
AT_EXIT=()

on_exit() {
    local status=$?
    touch "$WORK/stop" 2>/dev/null || true
    for pid in "$PROBE_PID" "$CLIENT_PID" "$NODE_PID" "${DEPOT_PID:-}"; do
        if [ -n "$pid" ]; then
            kill -9 "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
    for ((i = ${#AT_EXIT[@]} - 1; i >= 0; i--)); do eval "${AT_EXIT[i]}" || true; done
    if [ "${FAULT_KEEP:-0}" = 1 ] || [ "$status" -ne 0 ]; then
        echo "work directory kept: $WORK" >&2
    else
        rm -rf "$WORK"
    fi
}
trap on_exit EXIT
trap 'exit 130' INT TERM

say() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }
now_ms() { date +%s%3N; }

build() {
    say "building (release): rempart, fault_client"
    (cd "$ROOT" && cargo build --release --quiet -p rempart --bin rempart --example fault_client)
}

# node_start: starts `rempart serve` with NODE_ARGS, stdout to node.out.N, stderr appended to
# node.log; the first start takes ephemeral ports and learns them, later ones reuse them.
# Sets NODE_PID and START_NS (Unix ns just before the start).
node_start() {
    NODE_STARTS=$((NODE_STARTS + 1))
    local out="$WORK/node.out.$NODE_STARTS"
    START_NS="$(date +%s%N)"
    "$BIN" serve --public "$NODE_PUBLIC" --ingest "$NODE_INGEST" "${NODE_ARGS[@]}" \
        >"$out" 2>>"$WORK/node.log" &
    NODE_PID=$!
    if [ "$NODE_INGEST" = "127.0.0.1:0" ]; then
        for _ in $(seq 1 1200); do
            if grep -q '^rempart listening' "$out" 2>/dev/null; then break; fi
            if ! kill -0 "$NODE_PID" 2>/dev/null; then
                tail -20 "$WORK/node.log" >&2
                echo "rempart serve exited at start" >&2
                exit 1
            fi
            sleep 0.1
        done
        local line; line="$(grep '^rempart listening' "$out")"
        NODE_PUBLIC="${line#*public=}"; NODE_PUBLIC="${NODE_PUBLIC%% *}"
        NODE_INGEST="${line#*ingest=}"; NODE_INGEST="${NODE_INGEST%% *}"
    fi
}

# node_ready: waits for the ingest /readyz to answer 200; prints the ms since node_start.
node_ready() {
    local line
    line="$("$CLIENT" wait-ready --addr "$NODE_INGEST" --since-ns "$START_NS")"
    if [ "$line" = "ready_ms=none" ]; then
        tail -20 "$WORK/node.log" >&2
        echo "the node did not become ready" >&2
        exit 1
    fi
    echo "${line#ready_ms=}"
}

# node_check: fails the script, with the node's exit status and last log lines, if the node is
# no longer running when it should be.
node_check() {
    if [ -n "$NODE_PID" ] && ! kill -0 "$NODE_PID" 2>/dev/null; then
        local status=0
        wait "$NODE_PID" || status=$?
        NODE_PID=""
        echo "the node exited by itself (exit status $status); its last log lines:" >&2
        tail -5 "$WORK/node.log" >&2
        exit 1
    fi
}

node_kill9() {
    kill -9 "$NODE_PID" 2>/dev/null || true
    wait "$NODE_PID" 2>/dev/null || true
    NODE_PID=""
}

# node_stop: SIGTERM, then waits for the exit (a graceful stop).
node_stop() {
    kill -TERM "$NODE_PID" 2>/dev/null || true
    wait "$NODE_PID" 2>/dev/null || true
    NODE_PID=""
}

# client_start [ARGS]: the ingesting client against TO (default: the node's ingest listener).
client_start() {
    local to="${TO:-$NODE_INGEST}"
    rm -f "$WORK/stop"
    "$CLIENT" ingest --to "$to" --out "$WORK/client" --stop-file "$WORK/stop" \
        --clients "$FAULT_CLIENTS" --parcels "$FAULT_PARCELS" --events "$FAULT_EVENTS" "$@" \
        >"$WORK/client.out" 2>"$WORK/client.err" &
    CLIENT_PID=$!
}

# client_stop: stops the client (it finishes the attempt in flight); its last line goes to
# CLIENT_LINE. (Not in a command substitution: a subshell cannot wait for the client.)
client_stop() {
    touch "$WORK/stop"
    local status=0
    wait "$CLIENT_PID" || status=$?
    CLIENT_PID=""
    cat "$WORK/client.err" >&2
    if [ "$status" -ne 0 ]; then
        echo "the fault client failed ($status)" >&2
        exit 1
    fi
    CLIENT_LINE="$(tail -1 "$WORK/client.out")"
}

# acks: batches acknowledged so far.
acks() {
    if [ -f "$WORK/client/acks.log" ]; then grep -c '^ack ' "$WORK/client/acks.log" || true; else echo 0; fi
}

# probe_start: the readiness and lookup probe, once a second, into client/probes.tsv.
probe_start() {
    "$CLIENT" probe --public "$NODE_PUBLIC" --ingest "$NODE_INGEST" --out "$WORK/client" \
        --stop-file "$WORK/stop" --every-ms "${1:-1000}" 2>>"$WORK/probe.err" &
    PROBE_PID=$!
}

probe_stop() {
    touch "$WORK/stop"
    wait "$PROBE_PID" 2>/dev/null || true
    PROBE_PID=""
}

# probes FROM_MS TO_MS: the probe rounds in the window, grouped by what they saw.
probes() {
    awk -F'\t' -v from="$1" -v to="$2" 'NR > 1 && $1 >= from && $1 < to {
        n[sprintf("public /readyz %s %s | ingest /readyz %s %s | lookup %s%s", $2, $3, $4, $5, $6, ($7 == 1 ? " stale" : ""))]++
    } END { for (k in n) printf "  %6d × %s\n", n[k], k }' "$WORK/client/probes.tsv" | sort -rn
}

# log_lines FROM_LINE: node.log lines since line FROM_LINE; log_rate FROM_LINE SECONDS: per second.
log_count() { wc -l <"$WORK/node.log"; }
log_rate() {
    local n=$(( $(log_count) - $1 ))
    awk -v n="$n" -v s="$2" 'BEGIN { printf "%d lines in %.1f s = %.0f/s", n, s, (s > 0 ? n / s : 0) }'
}

# stats [WHAT=restarts]: median and max of the milliseconds on stdin.
stats() {
    sort -n | awk -v what="${1:-restarts}" '{ v[NR] = $1 } END {
        if (NR == 0) { print "none"; exit }
        m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
        printf "median %.0f ms, max %.0f ms (%d %s)", m, v[NR], NR, what }'
}

# verify STORE: checks every acknowledged event; its line goes to VERIFY_LINE, and VERIFY_FAILED
# turns 1 on a lost, duplicated, partial or unexpected event (or when the check cannot run).
verify() {
    say "verifying every acknowledged event in $1"
    local status=0
    VERIFY_LINE="$("$CLIENT" verify --out "$WORK/client" --store "$1")" || status=$?
    if [ "$status" -ne 0 ]; then
        VERIFY_LINE="${VERIFY_LINE:-verify: could not run (exit $status)}"
        echo "VERIFY FAILED" >&2
        VERIFY_FAILED=1
    fi
}
VERIFY_FAILED=0

# summary [ARGS]: what the node answered (see fault_client summary).
summary() { "$CLIENT" summary --out "$WORK/client" "$@"; }
