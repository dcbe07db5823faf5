# Board builds and the ARM test run; see docs/boards.md. Included at the end of
# the Makefile, so GO, BIN and VERSION come from there.

.PHONY: cross test-arm

# Static stripped ipcd and ipcapp for linux/arm (GOARM=7), linux/arm64 and
# linux/mipsle (GOMIPS=softfloat) in $(BIN)/<os>-<arch>/, with a size table.
# Fails when the ARMv7 ipcd exceeds 10 MiB.
cross:
	GO='$(GO)' BIN='$(BIN)' VERSION='$(VERSION)' bash scripts/cross.sh

# The unit and integration tests built for GOARCH=arm GOARM=7 and run under
# qemu-arm-static (installed when missing and running as root).
test-arm:
	GO='$(GO)' bash scripts/test-arm.sh
