#!/usr/bin/env bash
# Test hosts for process tests: one network namespace per host on a private bridge, so each node
# process has its own address, can be killed, cut off and healed like a machine on a network.
#
#   testhosts.sh up PREFIX COUNT      hosts PREFIX-1..COUNT at 10.213.X.1..COUNT (X from PREFIX)
#   testhosts.sh down PREFIX          removes them (safe to call twice)
#   testhosts.sh cut PREFIX I         disconnects host I (its veth goes down)
#   testhosts.sh heal PREFIX I        reconnects host I
#   testhosts.sh drop PREFIX I J      host I drops every packet from host J (TCP then fails both ways)
#   testhosts.sh undrop PREFIX I J    removes that rule
#   testhosts.sh refuse PREFIX I J    host I refuses connections host J opens, open ones included;
#                                     I still reaches J (one-way partition, by conntrack direction)
#   testhosts.sh unrefuse PREFIX I J  removes that rule
#   testhosts.sh addr PREFIX I        prints host I's address
#
# The subnet exists only inside these namespaces; nothing is routed off the machine. Needs root.
set -euo pipefail

usage() { sed -n '2,16p' "$0" >&2; exit 2; }
[ $# -ge 2 ] || usage
command=$1
prefix=$2
[[ $prefix =~ ^[a-z][a-z0-9]{1,7}$ ]] || { echo "testhosts: PREFIX must be 2-8 lowercase letters/digits, starting with a letter" >&2; exit 2; }

# A third octet derived from the prefix, so parallel test runs with different prefixes do not share a subnet.
octet=$(( $(printf '%s' "$prefix" | cksum | cut -d' ' -f1) % 200 + 20 ))
bridge="${prefix}br"
address() { echo "10.213.${octet}.$1"; }
namespace() { echo "${prefix}-$1"; }
hostveth() { echo "${prefix}v$1"; }

case $command in
up)
  count=${3:?count}
  ip link add "$bridge" type bridge
  ip addr add "10.213.${octet}.254/24" dev "$bridge"
  ip link set "$bridge" up
  # Docker sets the FORWARD policy to DROP; allow bridge-local traffic for our bridge only.
  iptables -C FORWARD -i "$bridge" -o "$bridge" -j ACCEPT 2>/dev/null ||
    iptables -I FORWARD -i "$bridge" -o "$bridge" -j ACCEPT
  for i in $(seq 1 "$count"); do
    ns=$(namespace "$i")
    ip netns add "$ns"
    ip link add "$(hostveth "$i")" type veth peer name eth0 netns "$ns"
    ip link set "$(hostveth "$i")" master "$bridge" up
    ip -n "$ns" addr add "$(address "$i")/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" link set lo up
  done
  ;;
down)
  for ns in $(ip netns list | awk '{print $1}' | grep -E "^${prefix}-[0-9]+$" || true); do
    ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
  done
  ip link del "$bridge" 2>/dev/null || true
  while iptables -D FORWARD -i "$bridge" -o "$bridge" -j ACCEPT 2>/dev/null; do :; done
  ;;
cut) ip link set "$(hostveth "${3:?host}")" down ;;
heal) ip link set "$(hostveth "${3:?host}")" up ;;
drop) ip netns exec "$(namespace "${3:?host}")" iptables -I INPUT -s "$(address "${4:?from}")" -j DROP ;;
undrop) ip netns exec "$(namespace "${3:?host}")" iptables -D INPUT -s "$(address "${4:?from}")" -j DROP ;;
refuse) ip netns exec "$(namespace "${3:?host}")" iptables -I INPUT -s "$(address "${4:?from}")" -m conntrack --ctdir ORIGINAL -j DROP ;;
unrefuse) ip netns exec "$(namespace "${3:?host}")" iptables -D INPUT -s "$(address "${4:?from}")" -m conntrack --ctdir ORIGINAL -j DROP ;;
addr) address "${3:?host}" ;;
*) usage ;;
esac
