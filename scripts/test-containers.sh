#!/usr/bin/env bash
# The container test: a 3-node cluster from cluster-config/compose-3.yml, each node in its own
# container, from the image with QEMU; the leader runs a real guest in QEMU, and its container is
# SIGKILLed while clients write. A new leader must take over with every acknowledged setting
# intact, the guest must boot again on a survivor under a higher epoch and run there only, and the
# killed node must catch up when restarted.
#
#   test-containers.sh        needs root; installs docker.io, docker-compose and QEMU if missing
#
# FLOTILLA_BINARY is the binary packaged into the image (default .build/debug/flotilla, which
# `swift build --build-tests` makes; .build/release/flotilla works as well). The guest is the test
# guest (scripts/build-test-guest.sh), built into .build/test-guest unless FLOTILLA_TEST_GUEST names
# a directory that holds one. It uses its own
# compose project (flotillatest), image tag (flotilla:test) and ports (127.0.0.1:7391-7393), and
# starts dockerd only if none is running — and then stops it again. Everything it made is removed
# on exit, pass or fail; on failure the nodes' logs are printed and the exit status is non-zero.
set -euo pipefail

cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "test-containers: needs root (it installs Docker, starts dockerd and creates containers); run it as root or with sudo" >&2
  exit 1
fi
binary=${FLOTILLA_BINARY:-.build/debug/flotilla}
[ -x "$binary" ] || { echo "test-containers: $binary is missing; run swift build --build-tests (or set FLOTILLA_BINARY)" >&2; exit 1; }
guest=${FLOTILLA_TEST_GUEST:-.build/test-guest}

export FLOTILLA_IMAGE=flotilla:test
export FLOTILLA_WITH_QEMU=1
export FLOTILLA_PORT_PREFIX=739
compose=(docker-compose -p flotillatest -f cluster-config/compose-3.yml)
started=$SECONDS
phase_started=$SECONDS
dockerd_was_running=0
cluster_created=0
boot_files=

phase() {
  echo "test-containers: [$((SECONDS - started))s, previous step $((SECONDS - phase_started))s] $*"
  phase_started=$SECONDS
}

fail() {
  echo "test-containers: FAILED: $*" >&2
  if [ "$cluster_created" = 1 ]; then
    echo "test-containers: container states:" >&2
    "${compose[@]}" ps >&2 || true
    echo "test-containers: the nodes' logs:" >&2
    "${compose[@]}" logs --no-color --tail 80 >&2 || true
  fi
  exit 1
}

cleanup() {
  local status=$?
  set +e
  if [ "$cluster_created" = 1 ]; then
    "${compose[@]}" down -v --remove-orphans --timeout 5 >/dev/null 2>&1 ||
      echo "test-containers: docker-compose down failed; remove project flotillatest by hand" >&2
    /usr/bin/docker rmi "$FLOTILLA_IMAGE" >/dev/null 2>&1
  fi
  [ -z "$boot_files" ] || rm -rf "$boot_files"
  if [ "$dockerd_was_running" = 0 ]; then
    ./scripts/dockerd.sh stop >/dev/null
  fi
  echo "test-containers: $([ "$status" -eq 0 ] && echo passed || echo failed) in $((SECONDS - started))s"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port() { echo "739${1#n}"; }
# One client call with a deadline, so a hung node fails the test instead of stalling it.
client() {
  local node=$1
  shift
  timeout 10 "$binary" "$@" --api "127.0.0.1:$(port "$node")"
}

# Prints the leader's id once node $1 reports one, for up to $2 seconds; $3: a leader to ignore.
leader_seen_by() {
  local deadline=$((SECONDS + $2)) output
  while [ $SECONDS -lt $deadline ]; do
    if output=$(client "$1" status 2>/dev/null) && [[ $output =~ leader\ (n[0-9]+) ]] &&
      [ "${BASH_REMATCH[1]}" != "${3:-}" ]; then
      echo "${BASH_REMATCH[1]}"
      return 0
    fi
    sleep 0.1
  done
  return 1
}

# Setting name -> value, for every write the cluster acknowledged.
declare -A acknowledged=()

# Prints what node $1 lacks of the acknowledged settings and fails, or succeeds silently when it
# has them all; $2 (--stale) reads its own copy instead of a linearizable read through the leader.
missing_settings() {
  local node=$1 listing name value
  declare -A found=()
  listing=$(client "$node" config list ${2:-} 2>&1) || { echo "config list failed: $listing"; return 1; }
  # The table's rows after its header: KEY VALUE (the test's names and values have no spaces).
  while read -r name value; do found[$name]=$value; done < <(tail -n +2 <<<"$listing")
  for name in "${!acknowledged[@]}"; do
    if [ "${found[$name]:-<unset>}" != "${acknowledged[$name]}" ]; then
      echo "$name reads \"${found[$name]:-<unset>}\", acknowledged as \"${acknowledged[$name]}\""
      return 1
    fi
  done
}

# Node -> its container's id (set once the containers exist; a killed and restarted container keeps it).
declare -A containers=()

# The QEMU processes running guest web in node $1's container, one `docker top` line each (the
# container's processes, seen from the host: the image has no ps); none when it is not running.
qemu_of_web() {
  /usr/bin/docker top "${containers[$1]}" -o pid,args 2>/dev/null | grep -F 'qemu-system' | grep -F 'guest=web,' || true
}

# Node $1's console of web at epoch $2 (the file QEMU's command line names), or nothing.
console_of_web() {
  local line
  line=$(qemu_of_web "$1" | grep -E "flotilla\.epoch=$2( |\$)") || return 0
  [[ $line =~ file,id=console,path=([^ ]+) ]] || return 0
  # docker cp writes a tar stream: the image has no cat.
  /usr/bin/docker cp "${containers[$1]}:${BASH_REMATCH[1]}" - 2>/dev/null | tar -xO 2>/dev/null || true
}

# Prints "STATE OWNER EPOCH" of VM web as node $1 reads it (linearizably, through the leader).
web_as_seen_by() {
  local listing
  listing=$(client "$1" vms 2>/dev/null) || return 1
  # Columns by their header's names; every cell up to EPOCH is one word ("-" when empty).
  awk 'NR == 1 { for (i = 1; i <= NF; i++) column[$i] = i; next }
    $1 == "web" { print $column["STATE"], $column["OWNER"], $column["EPOCH"]; found = 1 }
    END { exit !found }' <<<"$listing"
}

# Waits up to $3 seconds until node $1 runs web at epoch $2 in one QEMU process whose console
# shows the guest up at that epoch; fails the test with what it saw otherwise.
await_guest_on() {
  local node=$1 epoch=$2 deadline=$((SECONDS + $3)) processes console
  while :; do
    processes=$(qemu_of_web "$node")
    console=$(console_of_web "$node" "$epoch")
    if [ "$(grep -c . <<<"$processes")" = 1 ] && grep -q "vm=web epoch=$epoch uptime=" <<<"$console"; then
      return 0
    fi
    if [ $SECONDS -ge $deadline ]; then
      fail "web did not boot on $node at epoch $epoch within $3 s; its QEMU processes there: ${processes:-none}; the console's last lines: $(tail -n 3 <<<"$console")"
    fi
    sleep 0.5
  done
}

# Fails the test unless exactly one QEMU process, in node $1's container, runs web.
only_one_qemu_on() {
  local node hosts=() count=0 lines
  for node in n1 n2 n3; do
    lines=$(qemu_of_web "$node")
    [ -n "$lines" ] || continue
    count=$((count + $(grep -c . <<<"$lines")))
    hosts+=("$node")
  done
  if [ "$count" != 1 ] || [ "${hosts[*]}" != "$1" ]; then
    fail "expected one QEMU running web, on $1; found $count, on: ${hosts[*]:-no node}"
  fi
}

phase "installing docker.io, docker-compose and QEMU if missing"
FLOTILLA_CONTAINER_DEPS=1 FLOTILLA_QEMU_DEPS=1 ./scripts/install-deps.sh
if ./scripts/dockerd.sh status >/dev/null 2>&1; then dockerd_was_running=1; fi

phase "building the test guest in $guest if missing or out of date"
if [ -z "${FLOTILLA_TEST_GUEST:-}" ]; then ./scripts/build-test-guest.sh "$guest"; fi
for file in vmlinuz initramfs.cpio.gz; do
  [ -f "$guest/$file" ] || fail "the test guest's $guest/$file is missing (scripts/build-test-guest.sh $guest makes it)"
done

phase "starting dockerd if none is running"
./scripts/dockerd.sh start

phase "building the image $FLOTILLA_IMAGE with QEMU from $binary"
./scripts/container-image.sh "$binary" "$FLOTILLA_IMAGE"

phase "starting 3 containers (compose project flotillatest)"
"${compose[@]}" down -v --remove-orphans >/dev/null 2>&1 || true
cluster_created=1
"${compose[@]}" up -d || fail "docker-compose up failed"
for node in n1 n2 n3; do
  containers[$node]=$("${compose[@]}" ps -q "$node") || fail "docker-compose ps -q $node failed"
done

phase "waiting for a leader"
leader=$(leader_seen_by n1 30) || fail "no leader within 30 s"
for node in n1 n2 n3; do
  seen=$(leader_seen_by "$node" 10) || fail "$node does not answer status within 10 s"
  [ "$seen" = "$leader" ] || fail "n1 reports leader $leader but $node reports $seen"
done
survivors=()
for node in n1 n2 n3; do [ "$node" = "$leader" ] || survivors+=("$node"); done
phase "leader is $leader"

# The image's user and health check: every node runs as uid 10001 (writing its data volume as
# that user), and Docker's health check (`flotilla ready`, GET /readyz) turns healthy once it has a leader.
for node in n1 n2 n3; do
  # docker top needs the pid column.
  users=$(/usr/bin/docker top "${containers[$node]}" -o pid,uid,args | awk 'NR > 1 { print $2 }' | sort -u | tr '\n' ' ')
  [ "$users" = "10001 " ] || fail "$node's processes run as uid ${users:-<none>}, not 10001 alone"
done
deadline=$((SECONDS + 40))
for node in n1 n2 n3; do
  until [ "$(/usr/bin/docker inspect -f '{{.State.Health.Status}}' "${containers[$node]}")" = healthy ]; do
    [ $SECONDS -lt $deadline ] || fail "$node's container is not healthy: $(/usr/bin/docker inspect -f '{{json .State.Health}}' "${containers[$node]}")"
    sleep 0.5
  done
done
phase "every node runs as uid 10001 and its container is healthy (GET /readyz through flotilla ready)"

# Writes through every node: followers forward them to the leader.
for i in $(seq 1 15); do
  node=n$(((i % 3) + 1))
  client "$node" config set "before.$i" "value-$i" || fail "writing before.$i through $node failed with all nodes up"
  acknowledged[before.$i]=value-$i
done
phase "15 settings written through all three nodes"

# A real guest on the node about to be killed. Its kernel and initramfs lie on volume csv1, in
# the volume every node mounts.
deadline=$((SECONDS + 20))
until [ "$(client "$leader" nodes 2>/dev/null | awk '$2 == "up"' | wc -l)" = 3 ]; do
  [ $SECONDS -lt $deadline ] || fail "not all three nodes registered as up within 20 s: $(client "$leader" nodes 2>&1)"
  sleep 0.2
done
client "$leader" volume create csv1 --coordinator "$leader" >/dev/null || fail "creating volume csv1 failed"
boot_files=$(mktemp -d)
mkdir "$boot_files/boot"
cp "$guest/vmlinuz" "$guest/initramfs.cpio.gz" "$boot_files/boot/"
# The volume's directory appears once its coordinator has applied the creation.
deadline=$((SECONDS + 10))
until /usr/bin/docker cp "$boot_files/boot" "${containers[$leader]}:/var/lib/flotilla/shared/volumes/csv1/" 2>/dev/null; do
  [ $SECONDS -lt $deadline ] || fail "cannot copy the guest's boot files into volume csv1 through $leader's container"
  sleep 0.2
done
client "$leader" vm create web --startup 256M --volume csv1 --driver qemu --kernel csv1:boot/vmlinuz \
  --initrd csv1:boot/initramfs.cpio.gz --append quiet >/dev/null || fail "creating the QEMU VM web failed"
client "$leader" vm start web --on "$leader" >/dev/null || fail "starting web on $leader failed"
read -r state owner first_epoch < <(web_as_seen_by "$leader") || fail "web is not listed after its start"
if [ "$state" != running ] || [ "$owner" != "$leader" ]; then
  fail "web is $state on $owner after starting it on $leader"
fi
await_guest_on "$leader" "$first_epoch" 90
only_one_qemu_on "$leader"
# The accelerator the node chose (TCG, or KVM where it has a /dev/kvm that runs guests).
accelerator=$(curl -s --max-time 5 "http://127.0.0.1:$(port "$leader")/v1/agent" |
  sed -n 's/.*"accelerator":"\([a-z]*\)".*/\1/p' || true)
phase "web runs in QEMU (${accelerator:-accelerator not reported}) on $leader at epoch $first_epoch, its console shows it up"

# The leader dies while a client keeps writing through a survivor; a write may fail while there
# is no leader (its outcome is then unknown), but every acknowledged one must survive.
"${compose[@]}" kill -s SIGKILL "$leader" >/dev/null 2>&1 || fail "docker-compose kill -s SIGKILL $leader failed"
killed_at=$SECONDS
phase "SIGKILLed the leader's container ($leader)"
failed_writes=0
for i in $(seq 1 40); do
  if client "${survivors[0]}" config set "during.$i" "value-$i" >/dev/null 2>&1; then
    acknowledged[during.$i]=value-$i
  else
    failed_writes=$((failed_writes + 1))
    sleep 0.1
  fi
done
new_leader=$(leader_seen_by "${survivors[1]}" 20 "$leader") || fail "no new leader within 20 s of killing $leader"
[ "$new_leader" != "$leader" ] || fail "the killed node $leader is still reported as leader"
phase "new leader $new_leader ($((${#acknowledged[@]} - 15)) of 40 writes during the failover acknowledged, $failed_writes failed, killed $((SECONDS - killed_at))s ago)"

for i in $(seq 1 10); do
  client "${survivors[1]}" config set "after.$i" "value-$i" || fail "writing after.$i through ${survivors[1]} failed under leader $new_leader"
  acknowledged[after.$i]=value-$i
done
for node in "${survivors[@]}"; do
  problem=$(missing_settings "$node") || fail "on $node: $problem"
done
phase "all ${#acknowledged[@]} acknowledged settings readable on ${survivors[*]}"

# The guest died with its node (the container's processes all end with it); after the killed
# node's lease runs out the new leader restarts web on a survivor under a higher epoch.
deadline=$((SECONDS + 30))
until read -r state owner epoch < <(web_as_seen_by "$new_leader") && [ "$state" = running ] &&
  [ "$owner" != "$leader" ] && [[ $epoch =~ ^[0-9]+$ ]] && [ "$epoch" -gt "$first_epoch" ]; do
  [ $SECONDS -lt $deadline ] || fail "web is not running on a survivor within 30 s of the leader's kill (as $new_leader lists it: ${state:-?} on ${owner:-?} at epoch ${epoch:-?})"
  sleep 0.2
done
await_guest_on "$owner" "$epoch" 90
only_one_qemu_on "$owner"
[ "$(/usr/bin/docker inspect -f '{{.State.Running}}' "${containers[$leader]}")" = false ] ||
  fail "the killed node $leader's container is running again"
phase "web runs in QEMU on $owner at epoch $epoch (was $first_epoch on $leader), in no other container"

"${compose[@]}" start "$leader" >/dev/null 2>&1 || fail "docker-compose start $leader failed"
# Caught up: the restarted node's own copy (a stale read, no leader round trip) has every setting.
deadline=$((SECONDS + 30))
until problem=$(missing_settings "$leader" --stale); do
  [ $SECONDS -lt $deadline ] || fail "restarted $leader has not caught up within 30 s: $problem"
  sleep 0.2
done
seen=$(leader_seen_by "$leader" 10) || fail "restarted $leader does not answer status"
phase "restarted $leader caught up (sees leader $seen, has all ${#acknowledged[@]} settings)"
# Caught up, the restarted node knows web runs on the survivor: it must not boot it as well.
only_one_qemu_on "$owner"

# SIGTERM (docker stop) must end each node cleanly, as PID 1 of its container: exit 0, quickly.
stop_started=$SECONDS
"${compose[@]}" stop --timeout 10 >/dev/null 2>&1 || fail "docker-compose stop failed"
for node in n1 n2 n3; do
  code=$(/usr/bin/docker inspect -f '{{.State.ExitCode}}' "$("${compose[@]}" ps -q "$node")") ||
    fail "cannot inspect $node's container"
  [ "$code" = 0 ] || fail "$node exited $code on SIGTERM, expected 0"
done
[ $((SECONDS - stop_started)) -lt 8 ] || fail "docker-compose stop took $((SECONDS - stop_started))s; a node ignored SIGTERM until the grace period ran out"
phase "docker-compose stop: all nodes exited 0"
