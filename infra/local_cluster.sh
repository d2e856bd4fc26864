#!/usr/bin/env bash
# A heterogeneous Ray cluster on ONE machine, for trying and testing heterogeneous execution without a cloud:
#
#   head   0 CPUs, GCS + dashboard (bound to 127.0.0.1 only) + Ray Jobs API; study drivers run here
#   cpu    LC_CPUS CPUs,                         resources {"node_kind_cpu": 1}      (LC_CPU_NODES of them: cpu, cpu2, ...)
#   gpu    LC_CPUS CPUs + 1 (simulated) GPU,     resources {"node_kind_gpu": 1},            SKINLESION_SIMULATED_DEVICE=gpu
#   tpu    LC_CPUS CPUs + 1 (simulated) TPU,     resources {"TPU": 1, "node_kind_tpu": 1},  SKINLESION_SIMULATED_DEVICE=tpu
#
# The GPU and TPU are resource labels only: trials scheduled there really compute on this machine's CPU, and
# their records say so (device.simulated = "gpu"/"tpu", device.used.kind = "cpu", device.mismatch = true).
#
# Usage:  infra/local_cluster.sh up | down | status | env | stop-node NODE
#   up      start the nodes; prints the dashboard URL to submit to (orchestrator submit FILE --address URL)
#   down    stop exactly the processes this script started (by their process groups; never `ray stop`,
#           which would also kill every other Ray on this machine)
#   stop-node NODE   lose one worker node (cpu, cpu2, gpu, tpu) as a preempted VM would: its raylet, agents and
#           workers are killed (SIGKILL, by their PIDs); the rest of the cluster keeps running
#   status  `ray status` of this cluster
#   env     print the state file (shell variables: LC_GCS_ADDRESS, LC_DASHBOARD_URL, ...)
#
# Settings (environment variables):
#   LC_DIR             state + Ray temp directory; keep it short (Unix socket paths), default /tmp/skinlesion-lc
#   LC_GCS_PORT        GCS port of the head node               (default 6390)
#   LC_DASHBOARD_PORT  dashboard / Jobs API port on 127.0.0.1  (default 8265)
#   LC_CLIENT_PORT     Ray Client server port                  (default 10011)
#   LC_CPUS            CPUs advertised by each worker node     (default 1; this suits a 2-core machine)
#   LC_CPU_NODES       number of cpu nodes                     (default 1; 2 to try losing a node)
#   LC_OBJECT_STORE_MB object store per node in MiB            (default 200)
#   LC_START_TIMEOUT   seconds to wait for all nodes to join   (default 120)
#   LC_AUTH_TOKEN_PATH Ray auth token file (default ~/.ray/auth_token, created if missing). Every node runs with
#                      RAY_AUTH_MODE=token; clients on this machine (orchestrator submit/list/logs, `ray job`) send
#                      the token found there, or the one RAY_AUTH_TOKEN_PATH names.
# Every other port (agents, metrics, workers) is picked free at start, so the cluster never collides with an
# embedded Ray (`orchestrator submit` without --address) or with another local cluster in another LC_DIR.
# The dashboard (Jobs API) listens on 127.0.0.1 only. The GCS and the raylets listen on this machine's address
# (Ray always resolves 127.0.0.1 to it for node-to-node traffic); token authentication guards them.
set -euo pipefail

CMD="${1:-status}"
LC_DIR="${LC_DIR:-/tmp/skinlesion-lc}"
STATE="$LC_DIR/cluster.env"
RAY_TMP="$LC_DIR/ray"   # one Ray temp dir per node below it: $RAY_TMP/<node> (see start_node)

die() { echo "local_cluster: $*" >&2; exit 2; }

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

port_busy() {
    python3 - "$1" <<'EOF'
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers bind: TIME_WAIT leftovers do not count
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(0)
finally:
    s.close()
sys.exit(1)
EOF
}

# Start one Ray node in a new session/process group (setsid), so that `down` can signal exactly its daemons.
# $1 node name, remaining arguments: extra `ray start` arguments. Environment for the node comes from the caller.
start_node() {
    local name="$1"; shift
    local log="$LC_DIR/$name.log"
    # Each node gets a temp dir of its own: nodes sharing one would share `runtime_resources/`, and one node's
    # runtime-env garbage collection would delete another node's copy of a job's working directory.
    setsid ray start --temp-dir="$RAY_TMP/$name" \
        --dashboard-agent-listen-port="$(free_port)" --dashboard-agent-grpc-port="$(free_port)" \
        --runtime-env-agent-port="$(free_port)" --metrics-export-port="$(free_port)" \
        --min-worker-port=0 --max-worker-port=0 \
        --object-store-memory=$(( ${LC_OBJECT_STORE_MB:-200} * 1024 * 1024 )) \
        --disable-usage-stats "$@" >"$log" 2>&1 </dev/null &
    local pgid=$!
    echo "LC_PGID_${name^^}=$pgid" >>"$STATE"
    if ! wait "$pgid"; then
        echo "local_cluster: starting the $name node failed; last lines of $log:" >&2
        tail -n 20 "$log" >&2
        return 1
    fi
}

cmd_up() {
    if [[ -f "$STATE" ]]; then
        die "a cluster state file exists ($STATE); run '$0 down' first (or use another LC_DIR)"
    fi
    [[ ${#RAY_TMP} -le 56 ]] || die "LC_DIR is too long for Ray's Unix socket paths (${#RAY_TMP} > 56 characters): $LC_DIR"
    command -v ray >/dev/null || die "the 'ray' command is not on PATH (pip install -e . installs it)"
    if ! python3 -c 'import jax' 2>/dev/null; then
        echo "local_cluster: note: JAX is not installed; the tpu node type (framework: jax) cannot run here and its" \
             "trials will be recorded misconfigured. Install it with: pip install -e '.[jax]'" >&2
    fi
    local gcs_port="${LC_GCS_PORT:-6390}" dash_port="${LC_DASHBOARD_PORT:-8265}" client_port="${LC_CLIENT_PORT:-10011}"
    local cpus="${LC_CPUS:-1}"
    for p in "$gcs_port" "$dash_port" "$client_port"; do
        if port_busy "$p"; then
            die "port $p is in use (set LC_GCS_PORT / LC_DASHBOARD_PORT / LC_CLIENT_PORT to free ports)"
        fi
    done
    mkdir -p "$LC_DIR" "$RAY_TMP"
    {
        echo "LC_DIR=$LC_DIR"
        echo "LC_GCS_ADDRESS=127.0.0.1:$gcs_port"
        echo "LC_DASHBOARD_URL=http://127.0.0.1:$dash_port"
    } >"$STATE"

    export RAY_USAGE_STATS_ENABLED=0
    # Token authentication on every node (the GCS and the dashboard reject requests without the token).
    local token_path="${LC_AUTH_TOKEN_PATH:-$HOME/.ray/auth_token}"
    if [[ ! -s "$token_path" ]]; then
        mkdir -p "$(dirname "$token_path")"
        (umask 077; python3 -c 'import secrets; print(secrets.token_hex(32), end="")' >"$token_path")
    fi
    echo "LC_AUTH_TOKEN_PATH=$token_path" >>"$STATE"
    export RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH="$token_path"
    unset RAY_AUTH_TOKEN
    # No node inherits a simulated device or a hidden accelerator list from the caller's shell.
    unset SKINLESION_SIMULATED_DEVICE CUDA_VISIBLE_DEVICES RAY_ADDRESS

    trap 'echo "local_cluster: start failed, stopping what was started" >&2; cmd_down >&2' ERR

    # The head runs no trials (0 CPUs): it holds the GCS, the dashboard (127.0.0.1 only) and the study drivers
    # that Ray Jobs start (a job's entrypoint needs no CPU).
    start_node head --head --port="$gcs_port" --num-cpus=0 --num-gpus=0 \
        --resources='{"node_kind_head": 1}' \
        --include-dashboard=true --dashboard-host=127.0.0.1 --dashboard-port="$dash_port" \
        --ray-client-server-port="$client_port"

    local address="127.0.0.1:$gcs_port"
    local cpu_nodes="${LC_CPU_NODES:-1}" i
    [[ "$cpu_nodes" =~ ^[1-9]$ ]] || die "LC_CPU_NODES must be 1..9, not '$cpu_nodes'"
    for (( i = 1; i <= cpu_nodes; i++ )); do
        start_node "cpu$( (( i > 1 )) && echo "$i")" --address="$address" --num-cpus="$cpus" --num-gpus=0 \
            --resources='{"node_kind_cpu": 1}'
    done
    SKINLESION_SIMULATED_DEVICE=gpu start_node gpu --address="$address" --num-cpus="$cpus" --num-gpus=1 \
        --resources='{"node_kind_gpu": 1}'
    SKINLESION_SIMULATED_DEVICE=tpu start_node tpu --address="$address" --num-cpus="$cpus" --num-gpus=0 \
        --resources='{"TPU": 1, "node_kind_tpu": 1}'
    trap - ERR

    # Wait until the GCS reports every node alive (head, cpu nodes, gpu, tpu).
    local deadline=$(( SECONDS + ${LC_START_TIMEOUT:-120} ))
    until python3 - "$address" "$(( cpu_nodes + 3 ))" <<'EOF'
import sys
from ray._raylet import GcsClient  # RAY_AUTH_MODE / RAY_AUTH_TOKEN_PATH are exported above
try:
    nodes = GcsClient(address=sys.argv[1]).get_all_node_info(timeout=5)
except Exception:
    sys.exit(1)
alive = [n for n in nodes.values() if n.state == 0]  # GcsNodeInfo.ALIVE
sys.exit(0 if len(alive) >= int(sys.argv[2]) else 1)
EOF
    do
        if (( SECONDS > deadline )); then
            echo "local_cluster: the nodes did not all join within ${LC_START_TIMEOUT:-120}s; stopping" >&2
            cmd_down >&2
            exit 1
        fi
        sleep 1
    done
    echo "Local heterogeneous cluster is up (state: $STATE)"
    echo "  nodes:     head (0 CPUs), $cpu_nodes cpu node(s), gpu (simulated), tpu (simulated); $cpus CPU(s) per worker node"
    echo "  dashboard: http://127.0.0.1:$dash_port   (127.0.0.1 only)"
    echo "  submit:    orchestrator submit experiments/quickstart.yaml --address http://127.0.0.1:$dash_port"
    echo "  stop:      LC_DIR=$LC_DIR $0 down"
}

# Whether process group $1 still has a live (non-zombie) process.
group_alive() {
    ps -eo pgid=,stat= | awk -v g="$1" '$1 == g && $2 !~ /^Z/ { found = 1 } END { exit !found }'
}

cmd_down() {
    if [[ ! -f "$STATE" ]]; then
        echo "local_cluster: no cluster state in $LC_DIR (nothing to stop)"
        return 0
    fi
    local pgids
    pgids=$(sed -n 's/^LC_PGID_[A-Z0-9]*=\([0-9]\+\)$/\1/p' "$STATE")
    # Workers first, the head last; SIGTERM, then SIGKILL for whatever is left after a grace period.
    local order
    order=$(echo "$pgids" | tac)
    for g in $order; do kill -TERM -- "-$g" 2>/dev/null || true; done
    local deadline=$(( SECONDS + 3 ))   # raylets and the GCS drain slowly on SIGTERM; nothing here needs it
    while (( SECONDS < deadline )); do
        local alive=0
        for g in $order; do
            if group_alive "$g"; then alive=1; fi
        done
        (( alive )) || break
        sleep 0.5
    done
    for g in $order; do kill -KILL -- "-$g" 2>/dev/null || true; done
    # Ray worker processes run in process groups of their own; they exit once their raylet is gone. Any that is
    # still there is found by this cluster's own temp directory in its command line, and stopped by its pid.
    local pids=() pid
    for pid in $(ls /proc | grep -E '^[0-9]+$'); do
        if { tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null | grep -qF -- "$RAY_TMP/"; then pids+=("$pid"); fi
    done
    if (( ${#pids[@]} )); then
        kill -TERM "${pids[@]}" 2>/dev/null || true
        sleep 2
        kill -KILL "${pids[@]}" 2>/dev/null || true
    fi
    rm -f "$STATE"
    echo "Local cluster in $LC_DIR stopped (logs kept in $LC_DIR)"
}

# Kill what runs under one node's own Ray temp directory (its workers), by PID. $1 node name, $2 signal.
kill_node_workers() {
    local pids=() pid
    for pid in $(ls /proc | grep -E '^[0-9]+$'); do
        if { tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null | grep -qF -- "$RAY_TMP/$1/"; then pids+=("$pid"); fi
    done
    if (( ${#pids[@]} )); then kill "-$2" "${pids[@]}" 2>/dev/null || true; fi
}

cmd_stop_node() {
    local name="${1:-}"
    [[ -f "$STATE" ]] || die "no cluster state in $LC_DIR"
    [[ -n "$name" && "$name" != head ]] || die "stop-node needs a worker node name (cpu, cpu2, gpu, tpu)"
    local pgid
    pgid=$(sed -n "s/^LC_PGID_${name^^}=\([0-9]\+\)$/\1/p" "$STATE")
    [[ -n "$pgid" ]] || die "no node '$name' in this cluster (see $STATE)"
    kill -KILL -- "-$pgid" 2>/dev/null || true   # raylet, agents, log monitor: no goodbye to the GCS
    kill_node_workers "$name" KILL
    sed -i "/^LC_PGID_${name^^}=/d" "$STATE"
    echo "Node $name stopped (its raylet and workers were killed)"
}

cmd_status() {
    [[ -f "$STATE" ]] || die "no cluster state in $LC_DIR (start one with '$0 up')"
    # shellcheck disable=SC1090
    source "$STATE"
    echo "dashboard: $LC_DASHBOARD_URL   gcs: $LC_GCS_ADDRESS"
    RAY_ADDRESS= RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH="$LC_AUTH_TOKEN_PATH" ray status --address "$LC_GCS_ADDRESS"
}

case "$CMD" in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    env) [[ -f "$STATE" ]] && cat "$STATE" || die "no cluster state in $LC_DIR" ;;
    stop-node) cmd_stop_node "${2:-}" ;;
    *) echo "usage: $0 up|down|status|env|stop-node NODE" >&2; exit 2 ;;
esac
