#!/usr/bin/env bash
# Runs the runbook: every shell block of docs/operations.md marked `# runbook` on its first line, in
# the order of the document, as one bash script (`set -euo pipefail`), against real local clusters,
# so the runbook cannot rot.
#
#   test-runbook.sh               check the self-test, then run the runbook (`make test` runs this)
#   test-runbook.sh --extract     print the script the blocks make, without running it
#                                 (`--extract compose`: the script --compose runs)
#   test-runbook.sh --self-check  only prove that a failing command or a missing output fails a run
#   test-runbook.sh --compose     run the compose blocks against a compose cluster (root, Docker)
#
# A shell block (```sh) in the document must start with one of these markers; any other fails the run,
# so no command slips in unchecked:
#   # runbook            run here, in order, in one shell (variables and functions carry over)
#   # runbook: compose   run by --compose only (needs root and Docker), after the first # runbook
#                        block; every run checks that every `make TARGET` is a Makefile target
#                        and every `scripts/cluster.sh VERB` a verb of that script
#   # runbook: kubectl   not run anywhere (no Kubernetes cluster): every file it names must exist
#
# The run happens in a fresh temporary directory, with the built `flotilla` (FLOTILLA_BINARY,
# default .build/debug/flotilla, which `swift build --build-tests` makes) first on PATH and
# FLOTILLA_API unset, so the CLI finds each cluster from .flotilla/cluster.json as an operator's
# would. PORT_BASE and RESTORE_PORT_BASE are free port bases picked here (the blocks default to
# 7100 and 7400, as an operator's shell would). On a failure it prints the block, its line in the
# document and the command that failed, and the nodes' logs; the clusters are stopped on every
# exit. FLOTILLA_RUNBOOK_DOC runs another document (the self-check uses that); FLOTILLA_KEEP=1
# keeps the directory.
#
# The self-check's documents and expected messages below are literal text, backquotes and all:
# shellcheck disable=SC2016
set -euo pipefail

cd "$(dirname "$0")/.."
root=$PWD
doc=${FLOTILLA_RUNBOOK_DOC:-docs/operations.md}
doc_file=$(realpath "$doc")
binary=${FLOTILLA_BINARY:-.build/debug/flotilla}

# Prints the script the runbook blocks of $1 make. Each block is preceded by a line that records
# its number, title and line in the document, so a failure can name them; an unmarked block, or a
# block left open, is an error.
# With a second argument `compose`, the script of the compose blocks instead, after the first
# `# runbook` block (the helpers every block may use).
extract() {
  awk -v doc="$1" -v mode="${2:-run}" '
    function fail(message) { print "test-runbook: " doc ":" NR ": " message > "/dev/stderr"; failed = 1; exit 1 }
    function start(title) { emitted++; printf "__runbook_block %d \"%s\" %d $LINENO\n", emitted, title, NR + 1 }
    !inside && /^#+ / { heading = $0; sub(/^#+ /, "", heading); gsub(/[`"$\\]/, "", heading) }
    !inside && /^```sh *$/ { inside = 1; first = 1; next }
    !inside && /^```(bash|shell|console)/ { fail("use ```sh for shell blocks, with a marker on the first line") }
    inside && /^```/ { inside = 0; next }
    inside && first {
      first = 0
      emit = 0
      if ($0 == "# runbook") {
        blocks++
        if (mode == "run" || blocks == 1) { emit = 1; start(heading) }
        next
      } else if ($0 == "# runbook: compose") {
        composed++
        if (mode == "compose") { emit = 1; start(heading) }
        next
      } else if ($0 == "# runbook: kubectl") { next }
      else fail("a shell block must start with # runbook, # runbook: compose or # runbook: kubectl; this one starts with: " $0)
    }
    inside && emit { print; next }
    END {
      if (failed) exit 1
      if (inside) fail("a shell block is not closed")
      if (blocks == 0) fail("no # runbook block")
      if (mode == "compose" && composed == 0) fail("no # runbook: compose block")
    }
  ' "$1"
}

# The lines of the blocks that are not run here (compose and kubectl), each with its kind.
unrun_lines() {
  awk '
    !inside && /^```sh *$/ { inside = 1; first = 1; next }
    inside && /^```/ { inside = 0; next }
    inside && first { first = 0; kind = ($0 == "# runbook: compose") ? "compose" : ($0 == "# runbook: kubectl") ? "kubectl" : ""; next }
    inside && kind != "" { print kind "\t" $0 }
  ' "$1"
}

# Checks what can be checked of the blocks that are not run: the Makefile targets and
# scripts/cluster.sh verbs of the compose blocks, the files the kubectl blocks name.
check_unrun() {
  local kind line target verb file problems=0
  while IFS=$'\t' read -r kind line; do
    line=${line%%#*}
    if [ "$kind" = compose ]; then
      while read -r target; do
        grep -qE "^$target:" Makefile || { echo "test-runbook: $1: make $target is not a Makefile target" >&2; problems=1; }
      done < <(grep -oE 'make [a-z-]+' <<<"$line" | cut -d' ' -f2)
      while read -r verb; do
        grep -qE "^ *$verb\)" scripts/cluster.sh || { echo "test-runbook: $1: scripts/cluster.sh has no verb $verb" >&2; problems=1; }
      done < <(grep -oE 'scripts/cluster\.sh [a-z]+' <<<"$line" | cut -d' ' -f2)
    else
      while read -r file; do
        [ -e "$file" ] || { echo "test-runbook: $1: $file does not exist" >&2; problems=1; }
      done < <(grep -oE 'cluster-config/[A-Za-z0-9./_-]+' <<<"$line")
    fi
  done < <(unrun_lines "$1")
  return "$problems"
}

# What runs before the blocks: strict mode, and a trap that names the block and the command.
prelude() {
  cat <<'EOF'
set -euo pipefail
set -E
__runbook_block() { __block=$1 __title=$2 __doc_line=$3 __script_line=$4; echo "== runbook block $1: $2 ($__doc:$3)"; }
__runbook_failed() {
  local status=$1 command=$2 line=$3 text
  [ -z "${__reported:-}" ] || return 0
  __reported=1
  local at=$((__doc_line + line - __script_line - 1))
  if [ "$line" -gt "${__script_line:-0}" ]; then
    text=$(sed -n "${at}p" "$__doc_file" 2>&1 || true)
    echo "test-runbook: FAILED in block ${__block:-?} (${__title:-}), $__doc:$at: ${text#"${text%%[! ]*}"}" >&2
  else
    # A command of a helper defined in an earlier block: its line is not in this block.
    echo "test-runbook: FAILED in block ${__block:-?} (${__title:-}), in a helper it called" >&2
  fi
  echo "test-runbook: the command that failed: \`$command\`, exit status $status" >&2
}
trap '__runbook_failed $? "$BASH_COMMAND" $LINENO' ERR
EOF
}

# A run of a small document must fail (or pass) as expected, naming the block and the command.
expect_run() {
  local name=$1 expected=$2 pattern=$3 text=$4 dir file output status
  dir=$(mktemp -d)
  file=$dir/doc.md
  printf '%s\n' "$text" >"$file"
  set +e
  output=$( { prelude; printf '__doc=%q __doc_file=%q\n' "$file" "$file"; extract "$file"; } 2>&1 | (cd "$dir" && bash) 2>&1)
  status=$?
  set -e
  rm -rf "$dir"
  if [ "$expected" = pass ] && [ "$status" -ne 0 ]; then
    echo "test-runbook: self-check $name: expected to pass, exited $status: $output" >&2
    return 1
  fi
  if [ "$expected" = fail ] && [ "$status" -eq 0 ]; then
    echo "test-runbook: self-check $name: expected to fail, passed: $output" >&2
    return 1
  fi
  if ! grep -qE -- "$pattern" <<<"$output"; then
    echo "test-runbook: self-check $name: output lacks /$pattern/: $output" >&2
    return 1
  fi
}

self_check() {
  local fence='```'
  expect_run "a passing block" pass '== runbook block 2: Two' "# T
## One
${fence}sh
# runbook
x=1
${fence}
## Two
${fence}sh
# runbook
[ \"\$x\" = 1 ]
${fence}"
  expect_run "a failing command" fail 'FAILED in block 2 \(Two\), .*:11: false' "# T
## One
${fence}sh
# runbook
true
${fence}
## Two
${fence}sh
# runbook
echo before
false
echo after
${fence}"
  expect_run "a missing output" fail 'FAILED in block 1 \(One\), .*:6: grep -E .running. list.txt' "# T
## One
${fence}sh
# runbook
printf 'Web stopped\\n' > list.txt
grep -E 'running' list.txt
${fence}"
  expect_run "a failure in a pipeline" fail 'FAILED in block 1 \(One\), .*:4: false \| cat' "## One
${fence}sh
# runbook
false | cat
${fence}"
  expect_run "a command in a helper" fail 'FAILED in block 2 \(Two\), in a helper it called' "## One
${fence}sh
# runbook
check() { grep -q running <<<\"\$1\"; }
${fence}
## Two
${fence}sh
# runbook
check stopped
${fence}"
  local file
  file=$(mktemp)
  printf '## One\n```sh\nflotilla status\n```\n' >"$file"
  if extract "$file" >/dev/null 2>&1; then echo "test-runbook: self-check: an unmarked block was accepted" >&2; rm -f "$file"; return 1; fi
  printf '## One\n```sh\n# runbook: compose\nmake cluster-upp\n```\n' >"$file"
  if check_unrun "$file" 2>/dev/null; then echo "test-runbook: self-check: make cluster-upp was accepted" >&2; rm -f "$file"; return 1; fi
  printf '## One\n```sh\n# runbook: compose\nscripts/cluster.sh kil 2\n```\n' >"$file"
  if check_unrun "$file" 2>/dev/null; then echo "test-runbook: self-check: cluster.sh kil was accepted" >&2; rm -f "$file"; return 1; fi
  rm -f "$file"
  echo "test-runbook: self-check passed (a failing command, a missing output, an unmarked block and a wrong target each fail)"
}

# A port base whose ports base+1…4 and base+101…104 nothing listens on, among 20000…31900.
free_port_base() {
  local listening base offset start=$((RANDOM % 120))
  listening=$(ss -Htln 2>/dev/null | awk '{print $4}' | sed 's/.*://' | sort -u)
  for i in $(seq 0 119); do
    base=$((20000 + ((start + i) % 120) * 100))
    [ "$base" -ne "${1:-0}" ] || continue
    for offset in 1 2 3 4 101 102 103 104; do
      grep -qx "$((base + offset))" <<<"$listening" && continue 2
    done
    echo "$base"
    return 0
  done
  echo "test-runbook: no free port base in 20000-31900" >&2
  return 1
}

# The compose blocks against a real compose cluster (needs root and Docker; `make test` runs it
# after the container test): from the repository's top directory, the binary packaged into the
# image and first on PATH; the cluster is removed on every exit.
run_compose() {
  if [ "$(id -u)" -ne 0 ]; then
    echo "test-runbook: --compose needs root (it starts Docker's daemon and creates containers); run it as root or with sudo" >&2
    exit 1
  fi
  check_unrun "$doc"
  [ -x "$binary" ] || { echo "test-runbook: $binary is missing; run swift build --build-tests (or set FLOTILLA_BINARY)" >&2; exit 1; }
  command -v jq >/dev/null || { echo "test-runbook: the runbook uses jq; scripts/install-deps.sh installs it" >&2; exit 1; }
  local script bin started=$SECONDS status=0
  script=$( { prelude; printf '__doc=%q __doc_file=%q\n' "$doc" "$doc_file"; extract "$doc" compose; })
  bin=$(mktemp -d "${TMPDIR:-/tmp}/flotilla-runbook-compose.XXXXXX")
  ln -s "$root/$binary" "$bin/flotilla"
  echo "test-runbook: running the # runbook: compose blocks of $doc with $binary"
  (
    unset FLOTILLA_API
    export FLOTILLA_BINARY=$binary
    PATH="$bin:$PATH" timeout --foreground 900 bash -c "$script"
  ) || status=$?
  if [ "$status" -ne 0 ]; then
    NODES=3 scripts/cluster.sh logs 2>&1 | tail -n 60 >&2 || true
  fi
  NODES=3 scripts/cluster.sh down >/dev/null 2>&1 || echo "test-runbook: cluster.sh down failed; remove compose project flotilla3 by hand" >&2
  rm -rf "$bin"
  echo "test-runbook: compose blocks $([ "$status" -eq 0 ] && echo passed || echo FAILED) in $((SECONDS - started))s"
  exit "$status"
}

case ${1:-} in
--extract) { prelude; printf '__doc=%q __doc_file=%q\n' "$doc" "$doc_file"; extract "$doc" "${2:-run}"; }; exit ;;
--self-check) self_check; exit ;;
--compose) run_compose ;;
"") ;;
*) sed -n '2,11p' "$0" >&2; exit 2 ;;
esac

self_check
check_unrun "$doc"
script=$( { prelude; printf '__doc=%q __doc_file=%q\n' "$doc" "$doc_file"; extract "$doc"; })

[ -x "$binary" ] || { echo "test-runbook: $binary is missing; run swift build --build-tests (or set FLOTILLA_BINARY)" >&2; exit 1; }
command -v jq >/dev/null || { echo "test-runbook: the runbook uses jq; scripts/install-deps.sh installs it" >&2; exit 1; }
work=$(mktemp -d "${TMPDIR:-/tmp}/flotilla-runbook.XXXXXX")
mkdir "$work/bin"
ln -s "$root/$binary" "$work/bin/flotilla"
started=$SECONDS

cleanup() {
  local status=$? dir pid cwd log
  set +e
  # Every local cluster the runbook made under $work, then whatever of it still runs (a node it
  # started by hand, an `events --follow`): only processes whose command line names $work or whose
  # working directory is in it.
  for dir in "$work"/.flotilla "$work"/*/.flotilla; do
    [ -f "$dir/cluster.json" ] && (cd "$work" && "$work/bin/flotilla" local down --dir "$dir" >/dev/null)
  done
  while read -r pid; do
    [ "$pid" != $$ ] && kill -9 "$pid" 2>/dev/null
  done < <({
    grep -lsF -- "$work/" /proc/[0-9]*/cmdline | cut -d/ -f3
    for cwd in /proc/[0-9]*/cwd; do
      dir=$(readlink "$cwd" 2>/dev/null) && [[ $dir == "$work" || $dir == "$work/"* ]] && echo "${cwd//[!0-9]/}"
    done
  } | sort -u)
  if [ "$status" -ne 0 ]; then
    for log in "$work"/.flotilla/n*.log "$work"/*/.flotilla/n*.log; do
      [ -f "$log" ] && { echo "--- ${log#"$work"/} (last 20 lines)"; tail -n 20 "$log"; } >&2
    done
  fi
  if [ "${FLOTILLA_KEEP:-0}" = 1 ]; then echo "test-runbook: kept $work" >&2; else rm -rf "$work"; fi
  echo "test-runbook: $([ "$status" -eq 0 ] && echo passed || echo FAILED) in $((SECONDS - started))s"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

PORT_BASE=$(free_port_base)
RESTORE_PORT_BASE=$(free_port_base "$PORT_BASE")
echo "test-runbook: running the # runbook blocks of $doc in $work (PORT_BASE=$PORT_BASE, RESTORE_PORT_BASE=$RESTORE_PORT_BASE)"
(
  cd "$work"
  unset FLOTILLA_API
  PATH="$work/bin:$PATH" PORT_BASE=$PORT_BASE RESTORE_PORT_BASE=$RESTORE_PORT_BASE \
    timeout --foreground 600 bash -c "$script"
)
