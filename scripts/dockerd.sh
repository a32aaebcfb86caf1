#!/usr/bin/env bash
# Starts Docker's daemon for Flotilla's containers when none is running, and stops only the one it
# started (by the PID it remembered), removing what that daemon leaves behind.
#
#   dockerd.sh start     no-op if a dockerd already answers; otherwise starts one and waits for it
#   dockerd.sh stop      stops the dockerd `start` started (nothing else); safe to call twice
#   dockerd.sh status    says whether dockerd answers and whether this script started it
#
# The daemon started here runs with --iptables=false --ip-forward=false --bridge=none: the
# containers reach each other on their compose network's bridge and the host reaches their
# published ports through docker-proxy, so it needs no NAT, no forwarding and no default bridge —
# and it leaves the machine's firewall (FORWARD policy, chains) and sysctls as they were.
# Needs root. The state (PID, log) is kept in FLOTILLA_DOCKERD_STATE (default /run/flotilla-dockerd).
set -euo pipefail

state=${FLOTILLA_DOCKERD_STATE:-/run/flotilla-dockerd}
pidfile=$state/dockerd.pid
log=$state/dockerd.log
docker=$(command -v /usr/bin/docker || command -v docker || true)

answers() { [ -n "$docker" ] && timeout 10 "$docker" info >/dev/null 2>&1; }

ours() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

start() {
  if answers; then
    ours && echo "dockerd: running (started by this script, PID $(cat "$pidfile"))" || echo "dockerd: using the running daemon"
    return 0
  fi
  [ "$(id -u)" -eq 0 ] || { echo "dockerd: starting Docker's daemon needs root" >&2; exit 1; }
  command -v dockerd >/dev/null || { echo "dockerd: not installed; run FLOTILLA_CONTAINER_DEPS=1 scripts/install-deps.sh" >&2; exit 1; }
  if [ -S /var/run/docker.sock ] && ! pgrep -x dockerd >/dev/null; then
    # A socket left by a daemon that was killed; dockerd refuses to start next to it otherwise.
    rm -f /var/run/docker.sock
  fi
  mkdir -p "$state"
  # setsid: the daemon must outlive this script and not get the caller's Ctrl-C.
  setsid dockerd --iptables=false --ip-forward=false --bridge=none >"$log" 2>&1 </dev/null &
  echo $! >"$pidfile"
  for _ in $(seq 1 150); do
    if answers; then
      echo "dockerd: started (PID $(cat "$pidfile"), log $log)"
      return 0
    fi
    if ! ours; then
      echo "dockerd: exited while starting; its log ($log):" >&2
      tail -n 30 "$log" >&2
      rm -f "$pidfile"
      exit 1
    fi
    sleep 0.2
  done
  echo "dockerd: did not answer within 30 s; its log ($log):" >&2
  tail -n 30 "$log" >&2
  exit 1
}

stop() {
  if [ ! -f "$pidfile" ]; then
    echo "dockerd: not started by this script; leaving any running daemon alone"
    return 0
  fi
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    # dockerd stops its containers (10 s grace each, in parallel) and its containerd first.
    for _ in $(seq 1 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      echo "dockerd: PID $pid still running after 20 s; sending SIGKILL" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$pidfile" /var/run/docker.sock
  # Leftovers of a daemon killed before it cleaned up: compose network bridges (br-<network id>)
  # with no container on them. A daemon started here made no iptables rules and no docker0.
  for bridge in $(ip -o link show type bridge 2>/dev/null | awk -F': ' '{print $2}' | grep -E '^br-[0-9a-f]{12}$' || true); do
    if [ -z "$(ls "/sys/class/net/$bridge/brif" 2>/dev/null)" ]; then
      ip link delete "$bridge" 2>/dev/null || true
    fi
  done
  echo "dockerd: stopped (PID $pid)"
}

case ${1:-} in
start) start ;;
stop) stop ;;
status)
  if answers; then
    ours && echo "dockerd: running (started by this script, PID $(cat "$pidfile"))" || echo "dockerd: running (not started by this script)"
  else
    echo "dockerd: not answering"
    exit 1
  fi
  ;;
*) sed -n '2,13p' "$0" >&2; exit 2 ;;
esac
