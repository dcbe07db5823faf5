#!/usr/bin/env bash
# Static, stripped builds of ipcd and ipcapp for the boards ipcd ships on,
# into bin/<os>-<arch>/, then a size table. Fails when a binary is not a
# static ELF for its target or when the ARMv7 ipcd outgrows its flash budget.
#
# Environment: GO (default go), VERSION (default from git), BIN (default bin),
# CROSS_TAGS (build tags; default nobroker: boards talk to a real broker, and
# the embedded demo broker costs 1.6 MB with the HTTP server its websocket listener needs), CROSS_GCFLAGS (default all=-l: no
# inlining saves another 0.9 MB of the 9.5 MiB flash budget at a CPU cost that
# the I/O-bound media path does not notice),
# CROSS_GOEXPERIMENT (default nogreenteagc: the collector Go had before 1.26,
# 24 KB smaller on ARMv7; the Green Tea collector pays off on many-core,
# large-heap machines, not on a camera's few megabytes of heap),
# CROSS_MAX_ARMV7_BYTES (default 9.5 MiB: the ARMv7 ipcd size limit).
set -euo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-go}
BIN=${BIN:-bin}
VERSION=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
max_armv7=${CROSS_MAX_ARMV7_BYTES:-$((19 * 512 * 1024))}
ldflags="-s -w -X main.version=${VERSION}"
tags=${CROSS_TAGS-nobroker}
gcflags=${CROSS_GCFLAGS-all=-l}
goexperiment=${CROSS_GOEXPERIMENT-nogreenteagc}

# dir GOARCH variant-variable variant `file` must report
targets=(
  "linux-arm    arm    GOARM=7         ARM, EABI5"
  "linux-arm64  arm64  -               ARM aarch64"
  "linux-mipsle mipsle GOMIPS=softfloat MIPS32"
)
programs=(ipcd ipcapp)

# Every variable that changes the generated code is set explicitly so that a
# GOARM or GOMIPS left in the caller's environment cannot leak into another
# target's build.
for t in "${targets[@]}"; do
  read -r dir arch variant _ <<<"$t"
  variant_env=()
  [ "$variant" != "-" ] && variant_env=("$variant")
  mkdir -p "$BIN/$dir"
  for p in "${programs[@]}"; do
    echo "cross: $dir/$p"
    # ARMv7 Linux has 4 KiB pages: segments aligned to 4 KiB instead of
    # the linker's 64 KiB default load the same and save up to 64 KiB of
    # padding each (about 100 KiB of the 9.5 MiB budget). arm64 and MIPS
    # kernels may use 16 or 64 KiB pages and keep the default.
    round=""
    [ "$dir" = linux-arm ] && round=" -R 0x1000"
    env -u GOARM -u GOMIPS -u GOARM64 -u GOFLAGS CGO_ENABLED=0 GOOS=linux GOARCH="$arch" GOEXPERIMENT="$goexperiment" "${variant_env[@]}" \
      "$GO" build -trimpath -tags "$tags" -gcflags "$gcflags" -ldflags "$ldflags$round" -o "$BIN/$dir/$p" "./cmd/$p"
  done
done

fail=0
have_file=1
command -v file >/dev/null || { have_file=0; echo "cross: file(1) not installed: checking with go version -m only"; }
for t in "${targets[@]}"; do
  read -r dir arch variant want <<<"$t"
  for p in "${programs[@]}"; do
    f="$BIN/$dir/$p"
    # The build settings embedded by the toolchain survive -s -w.
    info=$("$GO" version -m "$f")
    for setting in "CGO_ENABLED=0" "GOOS=linux" "GOARCH=$arch" "-trimpath=true"; do
      grep -qE "^[[:space:]]+build[[:space:]]+${setting}\$" <<<"$info" ||
        { echo "cross: $f: build setting $setting missing"; fail=1; }
    done
    if [ "$variant" != "-" ]; then
      grep -qE "^[[:space:]]+build[[:space:]]+${variant}\$" <<<"$info" ||
        { echo "cross: $f: build setting $variant missing"; fail=1; }
    fi
    if [ "$have_file" = 1 ]; then
      desc=$(file -b "$f")
      case "$desc" in
        ELF*"$want"*"statically linked"*) ;;
        *) echo "cross: $f: want a static ELF ($want), file says: $desc"; fail=1 ;;
      esac
      case "$desc" in
        *"not stripped"*) echo "cross: $f: not stripped: $desc"; fail=1 ;;
      esac
      echo "cross: $f: $desc"
    fi
  done
done

echo
printf '%-26s %12s %8s\n' binary bytes MB
for t in "${targets[@]}"; do
  read -r dir _ <<<"$t"
  for p in "${programs[@]}"; do
    f="$BIN/$dir/$p"
    size=$(stat -c %s "$f")
    printf '%-26s %12d %8s\n' "$f" "$size" "$(awk -v s="$size" 'BEGIN { printf "%.2f", s / 1048576 }')"
  done
done
echo "(MB = 1024*1024 bytes)"

size=$(stat -c %s "$BIN/linux-arm/ipcd")
if [ "$size" -gt "$max_armv7" ]; then
  echo "cross: $BIN/linux-arm/ipcd is $size bytes, over the ARMv7 limit of $max_armv7 bytes"
  fail=1
fi
exit "$fail"
