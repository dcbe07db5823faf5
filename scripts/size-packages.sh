#!/usr/bin/env bash
# Where the bytes of the ARMv7 ipcd go: builds it as scripts/cross.sh does
# but keeps the symbol table, and prints the sizes of its symbols summed per
# package (go tool nm -size), largest first. Symbols of a package's types
# (type:*) count for the package; pclntab and other tables of the runtime
# that no symbol names are not in the table, nor zero-filled data.
#
# Environment: GO (default go), CROSS_TAGS, CROSS_GCFLAGS (as scripts/cross.sh),
# SIZE_TOP (rows to print, default 40).
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
tags=${CROSS_TAGS-nobroker}
gcflags=${CROSS_GCFLAGS-all=-l}
goexperiment=${CROSS_GOEXPERIMENT-nogreenteagc}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
env -u GOARM -u GOFLAGS CGO_ENABLED=0 GOOS=linux GOARCH=arm GOARM=7 GOEXPERIMENT="$goexperiment" \
  "$GO" build -trimpath -tags "$tags" -gcflags "$gcflags" -ldflags "-R 0x1000" -o "$out" ./cmd/ipcd
"$GO" tool nm -size -sort size "$out" | awk -v top="${SIZE_TOP:-40}" -v filesize="$(stat -c %s "$out")" '
  # Zero-filled data (B, or a symbol larger than the file) takes no room in it.
  $3 == "B" || $3 == "b" || $2 > filesize { next }
  {
    size = $2; name = $4
    for (i = 5; i <= NF; i++) name = name " " $i
    sub(/^type:(\*)?/, "", name)
    sub(/^go:(itab\.)?(\*)?/, "", name)
    sub(/^\*/, "", name)
    # The package path ends at the first dot after its last slash, before
    # any type arguments or receiver.
    cut = match(name, /[\[(]/)
    if (cut > 0) name = substr(name, 1, cut - 1)
    n = split(name, parts, "/")
    last = parts[n]
    dot = index(last, ".")
    if (dot > 0) last = substr(last, 1, dot - 1)
    pkg = ""
    for (i = 1; i < n; i++) pkg = pkg parts[i] "/"
    pkg = pkg last
    if (pkg == "" || pkg ~ /^[0-9]/) pkg = "(other)"
    sum[pkg] += size; total += size
  }
  END {
    for (p in sum) printf "%10d %s\n", sum[p], p | "sort -rn | head -" top
    close("sort -rn | head -" top)
    printf "%10d %s\n", total, "(all symbols)"
  }'
printf '%10d %s\n' "$(stat -c %s "$out")" "(unstripped binary)"
