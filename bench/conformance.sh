#!/usr/bin/env bash
# OCI runtime conformance: opencontainers/runtime-tools' validation suite against runc and mlpack.
#
# Builds the suite offline from Debian's runtime-tools snapshot (0.9.0+git20220423.g0105384, the
# source of golang-github-opencontainers-runtime-tools-dev) with its vendored Go modules, then runs
# each group's TAP program with RUNTIME=<runtime> and prints "runtime group pass/total (fail N)".
#
# Usage: bench/conformance.sh [RUNTIME ...]   (default: runc mlpack)
#   RUNTIME  a name looked up in PATH (runc, crun, mlpack) or a path to the executable; one whose
#            name starts with "mlpack" is driven as `mlpack runtime "$@"` (the OCI runtime CLI:
#            create/start/state/kill/delete). A runtime that cannot be found is an error (exit 2).
#   RT_SRC   a runtime-tools checkout at g0105384 (default: $CACHE/runtime-tools; unpacked from
#            RT_TARBALL, or cloned from upstream, when absent, see fetch_source)
#   RT_GROUPS   space-separated validation groups (default: the ones SECURITY §10 names)
#   RESULTS  where the TAP logs go (default: a temp dir, printed)
# A group whose program printed no TAP result, or fewer results than its plan, counts the
# missing ones as failed: a program that crashed or printed nothing never passes.
# Needs root, go (golang-go), tar.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${MLPACK_CI_CACHE:-/var/cache/mlpack-ci}
RT_SRC=${RT_SRC:-$CACHE/runtime-tools}
RT_COMMIT=0105384
RT_GROUPS=${RT_GROUPS:-"default linux_masked_paths linux_readonly_paths linux_devices linux_seccomp
  linux_uid_mappings process_capabilities linux_cgroups_memory linux_cgroups_pids linux_cgroups_cpus
  linux_cgroups_devices linux_cgroups_relative_devices linux_ns_path linux_ns_path_type linux_ns_itype
  linux_ns_nopath process_rlimits hostname mounts linux_sysctl killsig create start state delete"}
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

runtime_path() { # name-or-path -> the executable RUNTIME should be, or fail
  local exe
  if [[ $1 == */* ]]; then exe=$1; else exe=$(command -v "$1") || exe=; fi
  [[ -n $exe && -x $exe ]] || { echo "error: runtime $1 not found (not in PATH, or not executable)" >&2; return 1; }
  case $(basename "$exe") in
    mlpack*)
      local w=$RESULTS/mlpack-oci
      printf '#!/bin/sh\nexec %q runtime "$@"\n' "$(realpath "$exe")" >"$w"
      chmod +x "$w"
      echo "$w"
      ;;
    *) echo "$exe" ;;
  esac
}

run_group() { # runtime-name runtime-path group
  local log=$RESULTS/$1.$3.tap
  # Each program prints TAP ("1..N", "ok N", "not ok N"); a crash mid-way leaves fewer lines.
  (cd "$RT_SRC" && RUNTIME=$2 timeout 300 "./validation/$3/$3.t" >"$log" 2>&1) || true
  local pass fail skip plan total note=""
  pass=$(grep -cE '^ok [0-9]+' "$log" || true)
  skip=$(grep -cE '^ok [0-9]+.*# ?SKIP' "$log" || true)
  fail=$(grep -cE '^not ok [0-9]+' "$log" || true)
  plan=$(sed -nE 's/^1\.\.([0-9]+).*/\1/p' "$log" | head -n1)
  total=$((pass + fail))
  if ((total == 0)); then
    note=$(grep -vE '^(#|1\.\.)' "$log" | head -n1 | cut -c1-100 || true)
    total=1 fail=1 note="(printed no result: ${note:-nothing})"
  elif [[ -n $plan ]] && ((plan > total)); then
    fail=$((fail + plan - total)) note="(stopped after $total of $plan)" total=$plan
  fi
  printf '%-10s %-32s %4d/%-4d fail %-3d skip %-3d %s\n' "$1" "$3" "$pass" "$total" "$fail" "$skip" "$note"
}

[[ $(id -u) -eq 0 ]] || { echo "conformance needs root" >&2; exit 1; }
runtimes=("$@")
((${#runtimes[@]})) || runtimes=(runc mlpack)
paths=()
for rt in "${runtimes[@]}"; do paths+=("$(runtime_path "$rt")") || exit 2; done
fetch_source
build
echo "runtime-tools $RT_COMMIT; logs in $RESULTS"
for i in "${!runtimes[@]}"; do
  name=$(basename "${runtimes[$i]}")
  for g in $RT_GROUPS; do run_group "$name" "${paths[$i]}" "$g"; done
done
