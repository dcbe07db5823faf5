#!/usr/bin/env bash
# Builds the unit and integration tests for linux/arm (GOARM=7, no cgo, so no
# race detector) and runs each package's test binary under qemu-arm-static,
# with the package directory as working directory as `go test` always does.
# Host tools the tests start (mosquitto, ffprobe, gcc) run natively:
# qemu-user hands their execve to the host kernel.
#
# Environment: GO (default go), QEMU_ARM (default qemu-arm-static),
# TEST_ARM_PKGS (default ./...), TEST_ARM_FLAGS (extra go test flags, e.g. -run X -v).
set -euo pipefail

# The host kernel cannot execute an ARM binary without a binfmt_misc
# registration, which is global to the machine, yet some tests start ARM
# programs themselves. Each such program is replaced by a host shell script
# that execs it under qemu, so its children are emulated too and a signal
# sent to it reaches the program:
# - `go test -exec` runs "test-arm.sh --exec BINARY ARGS...": the test binary
#   runs with os.Args[0] set to its script, so a test that starts its own
#   binary again (os.Args[0]) gets an emulated child;
# - a test that builds a program with `go build -o OUT` (GOARCH=arm is
#   inherited) finds this script first in PATH as `go`, which turns OUT into
#   a script after the build.

# qemu_script SCRIPT BINARY writes the host script that runs BINARY.
qemu_script() {
  printf '#!/bin/sh\nexec %s -0 "$0" %s "$@"\n' "$TEST_ARM_QEMU" "$2" >"$1.$$"
  chmod +x "$1.$$"
  mv -f "$1.$$" "$1"
}

if [ "$(basename "$0")" = go ]; then
  if [ "${1:-}" != build ]; then
    exec "$TEST_ARM_GO" "$@"
  fi
  out="" prev=""
  for a in "$@"; do
    [ "$prev" = -o ] && out=$a
    case $a in -o=*) out=${a#-o=} ;; esac
    prev=$a
  done
  "$TEST_ARM_GO" "$@"
  if [ -n "$out" ] && [ -f "$out" ]; then
    mv -f "$out" "$out.arm"
    qemu_script "$out" "$out.arm"
  fi
  exit 0
fi

if [ "${1:-}" = --exec ]; then
  bin=$2
  shift 2
  [ -x "$bin-qemu" ] || qemu_script "$bin-qemu" "$bin"
  shim="$(dirname "$bin")/go-shim"
  if [ ! -e "$shim/go" ]; then
    mkdir -p "$shim"
    ln -sf "$(readlink -f "$0")" "$shim/go"
  fi
  PATH="$shim:$PATH" exec "$bin-qemu" "$@"
fi

cd "$(dirname "$0")/.."
GO=${GO:-go}
qemu=${QEMU_ARM:-qemu-arm-static}

if ! command -v "$qemu" >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "test-arm: installing qemu-user-static"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-user-static >/dev/null
  fi
  command -v "$qemu" >/dev/null || {
    echo "test-arm: $qemu not found: install qemu-user-static (apt-get install -y qemu-user-static)" >&2
    exit 1
  }
fi
TEST_ARM_QEMU=$(command -v "$qemu")
TEST_ARM_GO=$(command -v "$GO")
# Tests that measure the memory of a process they start skip that check:
# under emulation the process is qemu.
TEST_ARM_EMULATOR=$(basename "$qemu")
export TEST_ARM_QEMU TEST_ARM_GO TEST_ARM_EMULATOR

# Emulation is several times slower than native: the timeout is generous, the
# tests themselves are unchanged.
# shellcheck disable=SC2086 # TEST_ARM_PKGS and TEST_ARM_FLAGS are word lists
env -u GOARM -u GOFLAGS CGO_ENABLED=0 GOOS=linux GOARCH=arm GOARM=7 \
  "$GO" test -exec "$PWD/scripts/test-arm.sh --exec" -count=1 -timeout 20m ${TEST_ARM_FLAGS:-} ${TEST_ARM_PKGS:-./...}
