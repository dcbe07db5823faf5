#!/usr/bin/env bash
# Builds the unit and integration tests for linux/arm (GOARM=7, no cgo, so no
# race detector) and runs each package's test binary under qemu-arm-static,
# with the package directory as working directory as `go test` always does.
# Host tools the tests start (mosquitto, ffprobe) run natively: qemu-user
# hands their execve to the host kernel.
#
# Environment: GO (default go), QEMU_ARM (default qemu-arm-static),
# TEST_ARM_PKGS (default ./...), TEST_ARM_FLAGS (extra go test flags, e.g. -run X -v).
set -euo pipefail

qemu=${QEMU_ARM:-qemu-arm-static}

# `go test -exec` runs "test-arm.sh --exec BINARY ARGS...". Some tests start
# their own binary again (os.Args[0]) as a child process; the host kernel
# cannot execute an ARM binary without a binfmt_misc registration, which is
# global to the machine. Instead, os.Args[0] is made a host shell script
# that runs the binary under qemu again, so children and grandchildren are
# emulated too, and a signal to the child reaches qemu (the script execs it).
if [ "${1:-}" = "--exec" ]; then
  bin=$2
  shift 2
  wrapper="$bin-qemu"
  if [ ! -x "$wrapper" ]; then
    printf '#!/bin/sh\nexec %s -0 "$0" %s "$@"\n' "$(command -v "$qemu")" "$bin" >"$wrapper.$$"
    chmod +x "$wrapper.$$"
    mv -f "$wrapper.$$" "$wrapper"
  fi
  exec "$wrapper" "$@"
fi

cd "$(dirname "$0")/.."
self="$PWD/scripts/test-arm.sh"
GO=${GO:-go}

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

# Emulation is several times slower than native: the timeout is generous, the
# tests themselves are unchanged.
# shellcheck disable=SC2086 # TEST_ARM_PKGS and TEST_ARM_FLAGS are word lists
env -u GOARM -u GOFLAGS CGO_ENABLED=0 GOOS=linux GOARCH=arm GOARM=7 \
  "$GO" test -exec "$self --exec" -count=1 -timeout 20m ${TEST_ARM_FLAGS:-} ${TEST_ARM_PKGS:-./...}
