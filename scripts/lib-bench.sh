# What the bench scripts share, sourced by them: the checks before a run and the release build.
# A script sets `bench` (its name, for messages) before sourcing, and `work` and `scratch` before
# calling build_release.

# Fails unless every tool is installed; `hint` says where to get them.
require_tools() { # hint tool...
  local hint=$1 tool
  shift
  for tool in "$@"; do
    command -v "$tool" >/dev/null || { echo "$bench: $tool is missing ($hint)" >&2; exit 1; }
  done
}

# Fails if anything answers on one of the loopback ports.
require_free_ports() { # port...
  local port
  for port in "$@"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$bench: port $port is in use (a previous run left a process?); free it first" >&2
      exit 1
    fi
  done
}

# Builds the products in release mode into $scratch; shows the build log only when it fails.
build_release() { # product...
  local product
  echo "building $* (release)…" >&2
  for product in "$@"; do
    swift build -c release --product "$product" --scratch-path "$scratch" >"$work/build.log" 2>&1 ||
      { cat "$work/build.log" >&2; exit 1; }
  done
}
