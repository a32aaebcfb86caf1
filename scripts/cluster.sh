#!/usr/bin/env bash
# Runs a Flotilla cluster in containers on this machine: one container per node from
# cluster-config/compose-N.yml, the image made from a binary built here (docs/containers.md).
#
#   cluster.sh up       installs Docker if missing, starts dockerd if none runs, builds the image,
#                       starts the nodes, waits for a leader and prints `flotilla status`
#   cluster.sh down     removes the containers and their volumes; stops dockerd if `up` started it
#   cluster.sh status   `flotilla status` through the first node whose published API answers
#   cluster.sh kill I   SIGKILLs node nI's container (failover test); `start I` brings it back
#   cluster.sh start I  starts node nI's container again
#   cluster.sh logs [I] the nodes' logs
#
# NODES=3 or 5 picks the compose file (default 3); FLOTILLA_BINARY the binary to package (default
# .build/release/flotilla); FLOTILLA_IMAGE the image tag (default flotilla:latest). The API of node
# nI is published on 127.0.0.1:730I.
set -euo pipefail

cd "$(dirname "$0")/.."
nodes=${NODES:-3}
case $nodes in
3 | 5) ;;
*) echo "cluster: NODES is \"$nodes\"; cluster-config/ has compose files for 3 and 5 nodes" >&2; exit 2 ;;
esac
binary=${FLOTILLA_BINARY:-.build/release/flotilla}
export FLOTILLA_IMAGE=${FLOTILLA_IMAGE:-flotilla:latest}
export FLOTILLA_PORT_PREFIX=730
compose=(docker-compose -p "flotilla$nodes" -f "cluster-config/compose-$nodes.yml")

node_index() {
  [[ ${1:-} =~ ^n?([1-9])$ ]] && [ "${BASH_REMATCH[1]}" -le "$nodes" ] || {
    echo "cluster: \"${1:-}\" is not a node of the $nodes-node cluster; give 1..$nodes (or n1..n$nodes)" >&2
    exit 2
  }
  echo "${BASH_REMATCH[1]}"
}

# Waits up to $1 seconds for any node to answer `flotilla status` with a leader; prints its id.
wait_for_leader() {
  local deadline=$((SECONDS + $1)) output
  while [ $SECONDS -lt $deadline ]; do
    for i in $(seq 1 "$nodes"); do
      output=$(timeout 5 "$binary" status --api "127.0.0.1:730$i" 2>/dev/null) || continue
      if [[ $output =~ leader\ (n[0-9]+) ]]; then
        echo "${BASH_REMATCH[1]}"
        return 0
      fi
    done
    sleep 0.2
  done
  return 1
}

case ${1:-} in
up)
  [ -x "$binary" ] || { echo "cluster: $binary is missing; run make release (or set FLOTILLA_BINARY)" >&2; exit 1; }
  FLOTILLA_CONTAINER_DEPS=1 ./scripts/install-deps.sh
  ./scripts/dockerd.sh start
  ./scripts/container-image.sh "$binary" "$FLOTILLA_IMAGE"
  "${compose[@]}" up -d
  if ! leader=$(wait_for_leader 30); then
    echo "cluster: no leader within 30 s; the nodes' logs:" >&2
    "${compose[@]}" logs --no-color --tail 50 >&2
    exit 1
  fi
  echo "cluster: $nodes nodes up, leader $leader; API on 127.0.0.1:7301..730$nodes"
  "$binary" status --api 127.0.0.1:7301
  ;;
down)
  if command -v docker-compose >/dev/null && ./scripts/dockerd.sh status >/dev/null 2>&1; then
    "${compose[@]}" down -v --remove-orphans
  fi
  ./scripts/dockerd.sh stop
  ;;
status)
  # The first node that answers: with a node killed, the others still do.
  for i in $(seq 1 "$nodes"); do
    timeout 5 "$binary" status --api "127.0.0.1:730$i" 2>/dev/null && exit 0
  done
  echo "cluster: no node answered on 127.0.0.1:7301..730$nodes; is the cluster up (cluster.sh up)?" >&2
  exit 1
  ;;
kill) "${compose[@]}" kill -s SIGKILL "n$(node_index "${2:-}")" ;;
start) "${compose[@]}" start "n$(node_index "${2:-}")" ;;
logs)
  if [ $# -ge 2 ]; then
    "${compose[@]}" logs --no-color "n$(node_index "$2")"
  else
    "${compose[@]}" logs --no-color
  fi
  ;;
*) sed -n '2,16p' "$0" >&2; exit 2 ;;
esac
