# Shared settings and helpers of tests/cluster/{build,up,down}. Sourced, not run.
# shellcheck shell=bash

K8S_VERSION="v1.34.4"
CLUSTER_DIR="${RARC_CLUSTER_DIR:-/var/tmp/rarc-cluster}"
CACHE_DIR="${RARC_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/rarc}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TOOLS_DIR="$HERE/tools"
BIN_CACHE="$CACHE_DIR/k8s-$K8S_VERSION/bin"
BIN="$CLUSTER_DIR/bin"
PKI="$CLUSTER_DIR/pki"
LOGS="$CLUSTER_DIR/logs"
RUN="$CLUSTER_DIR/run"
NODE_NAME="rarc-node"

# Ports and ranges, chosen not to collide with a developer's own cluster or services.
ETCD_CLIENT_PORT=23790
ETCD_PEER_PORT=23800
APISERVER_PORT=16443
SERVICE_CIDR="10.96.0.0/16"
SERVICE_IP="10.96.0.1"
POD_CIDR="10.88.0.0/16"
CNI_BRIDGE="rarc-cni0"
CONTAINERD_SOCK="$RUN/containerd.sock"

KUBECONFIG_ADMIN="$CLUSTER_DIR/admin.kubeconfig"
PAUSE_IMAGE="rarc.local/pause:3.10"
BUSYBOX_IMAGE="rarc.local/busybox:1"

for d in /usr/local/go/bin "$HOME/go/bin"; do
  [ -d "$d" ] && case ":$PATH:" in *":$d:"*) ;; *) PATH="$PATH:$d" ;; esac
done
export PATH

log() { printf '[cluster %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# The IP other hosts (and pods) reach this node at: the source address of the default route.
node_ip() {
  ip -4 route get 1.1.1.1 2>/dev/null | awk '{for (i = 1; i <= NF; i++) if ($i == "src") { print $(i + 1); exit }}'
}

# Starts a command in the background in its own session, with its log and pid file.
start_daemon() {
  local name="$1"; shift
  mkdir -p "$LOGS" "$RUN"
  setsid "$@" >"$LOGS/$name.log" 2>&1 < /dev/null &
  echo $! > "$RUN/$name.pid"
}

daemon_alive() {
  local pidfile="$RUN/$1.pid"
  [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null
}

# wait_for DESCRIPTION TIMEOUT_SECONDS COMMAND...: polls COMMAND until it succeeds.
wait_for() {
  local what="$1" timeout="$2"; shift 2
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      log "timed out after ${timeout}s waiting for $what"
      return 1
    fi
    sleep 0.2
  done
}

kubectl_admin() { "$BIN/kubectl" --kubeconfig "$KUBECONFIG_ADMIN" "$@"; }
