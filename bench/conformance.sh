#!/usr/bin/env bash
# OCI runtime conformance: opencontainers/runtime-tools' validation suite against runc and mlpack.
#
# Builds the suite offline from Debian's runtime-tools snapshot (0.9.0+git20220423.g0105384, the
# source of golang-github-opencontainers-runtime-tools-dev) with its vendored Go modules, then runs
# each group's TAP program with RUNTIME=<runtime> and prints "runtime group pass/total (fail N)".
#
# Usage: bench/conformance.sh [runc|mlpack|crun|PATH ...]   (default: runc mlpack)
#   RT_SRC   a runtime-tools checkout at g0105384 (default: $CACHE/runtime-tools; fetched from
#            GitHub or unpacked from a Debian source tarball when absent, see fetch_source)
#   RT_GROUPS   space-separated validation groups (default: the ones SECURITY §10 names)
#   RESULTS  where the TAP logs go (default: a temp dir, printed)
# Needs root, go (golang-go), tar. mlpack is driven through a wrapper that execs
# `.venv/bin/mlpack runtime "$@"` (the OCI runtime CLI: create/start/state/kill/delete).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${MLPACK_CI_CACHE:-/var/cache/mlpack-ci}
RT_SRC=${RT_SRC:-$CACHE/runtime-tools}
RT_COMMIT=0105384
RT_GROUPS=${RT_GROUPS:-"default linux_masked_paths linux_readonly_paths linux_devices linux_seccomp linux_uid_mappings process_capabilities linux_cgroups_memory linux_cgroups_pids linux_cgroups_cpus"}
RESULTS=${RESULTS:-$(mktemp -d /tmp/mlpack-conformance.XXXXXX)}
mkdir -p "$RESULTS"

fetch_source() {
  [[ -f $RT_SRC/validation/util/test.go ]] && return
  mkdir -p "$(dirname "$RT_SRC")"
  local tmp
  tmp=$(mktemp -d)
  # Debian ships only the library packages in the -dev .deb; the validation programs are in the
  # source package. Prefer a local Debian source tarball, else the upstream git history.
  if [[ -n ${RT_TARBALL:-} ]]; then
    tar -xf "$RT_TARBALL" -C "$tmp" && mv "$tmp"/*/ "$RT_SRC"
  else
    git clone -q https://github.com/opencontainers/runtime-tools "$tmp/rt"
    git -C "$tmp/rt" archive --prefix=runtime-tools/ "$RT_COMMIT" | tar -x -C "$tmp"
    mv "$tmp/runtime-tools" "$RT_SRC"
  fi
  rm -rf "$tmp"
}

build() {
  local targets=(runtimetest)
  for g in $RT_GROUPS; do targets+=("validation/$g/$g.t"); done
  # Offline: the snapshot vendors its modules; GOPROXY=off makes any network attempt an error.
  (cd "$RT_SRC" && GOFLAGS=-mod=vendor GOPROXY=off GO111MODULE=on make -s "${targets[@]}" >/dev/null)
}

runtime_path() {
  case $1 in
    mlpack)
      local w=$RESULTS/mlpack-oci
      printf '#!/bin/sh\nexec %q runtime "$@"\n' "$ROOT/.venv/bin/mlpack" >"$w"
      chmod +x "$w"
      echo "$w"
      ;;
    */*) echo "$1" ;;
    *) command -v "$1" ;;
  esac
}

run_group() { # runtime-name runtime-path group
  local log=$RESULTS/$1.$3.tap
  # Each program prints TAP ("ok N", "not ok N"); a crash mid-way leaves fewer lines.
  (cd "$RT_SRC" && RUNTIME=$2 timeout 300 "./validation/$3/$3.t" >"$log" 2>&1) || true
  local pass fail skip
  pass=$(grep -cE '^ok [0-9]+' "$log" || true)
  skip=$(grep -cE '^ok [0-9]+.*# ?SKIP' "$log" || true)
  fail=$(grep -cE '^not ok [0-9]+' "$log" || true)
  printf '%-10s %-22s %4d/%-4d fail %-3d skip %d\n' "$1" "$3" "$pass" "$((pass + fail))" "$fail" "$skip"
}

[[ $(id -u) -eq 0 ]] || { echo "conformance needs root" >&2; exit 1; }
fetch_source
build
runtimes=("$@")
((${#runtimes[@]})) || runtimes=(runc mlpack)
echo "runtime-tools $RT_COMMIT; logs in $RESULTS"
for rt in "${runtimes[@]}"; do
  path=$(runtime_path "$rt") || { echo "$rt: not installed" >&2; continue; }
  name=$(basename "$rt")
  for g in $RT_GROUPS; do run_group "$name" "$path" "$g"; done
done
