#!/usr/bin/env bash
# Test hosts for process tests: one network namespace per host on a private bridge, so each node
# process has its own address, can be killed, cut off and healed like a machine on a network.
#
#   testhosts.sh up PREFIX COUNT      hosts PREFIX-1..COUNT at 10.213.X.1..COUNT (X from PREFIX, or
#                                     the next subnet no route uses)
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

bridge="${prefix}br"
# The third octet: `up` starts from one derived from the prefix and takes the next whose subnet no
# route uses yet (hosts left behind by a run that was killed keep their route; a second bridge on
# the same subnet would take this run's traffic). Every other command reads it from the bridge.
if [ "$command" = up ]; then
  octet=$(( $(printf '%s' "$prefix" | cksum | cut -d' ' -f1) % 200 + 20 ))
  for _ in $(seq 1 200); do
    [ -n "$(ip route show "10.213.${octet}.0/24")" ] || break
    octet=$(( (octet - 20 + 1) % 200 + 20 ))
  done
  [ -z "$(ip route show "10.213.${octet}.0/24")" ] || { echo "testhosts: every subnet 10.213.20-219.0/24 is in use" >&2; exit 1; }
else
  octet=$( (ip -4 -o addr show dev "$bridge" 2>/dev/null || true) | sed -n 's|.* 10\.213\.\([0-9]*\)\.254/24.*|\1|p')
  if [ -z "$octet" ] && [ "$command" != down ]; then
    echo "testhosts: no hosts with prefix $prefix (no bridge $bridge); run testhosts.sh up first" >&2
    exit 1
  fi
fi
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
