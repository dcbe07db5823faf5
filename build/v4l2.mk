# V4L2 capture (media/v4l2source.go, build tag v4l2, cgo + libx264) and its
# test against the kernel's vivid driver in a qemu VM; see board/vm/README.md.
# Included at the end of the Makefile, so GO comes from there.

.PHONY: test-v4l2 test-v4l2-unit

# The tagged unit tests: x264 on synthetic pictures, mode choice, native
# buffers, SPS parsing. Needs gcc and libx264-dev.
test-v4l2-unit:
	CGO_ENABLED=1 $(GO) test -race -count=1 -tags v4l2 -run 'V4L2|ChooseRawMode' ./media/
	CGO_ENABLED=1 $(GO) test -race -count=1 -tags v4l2 ./board/vm/...

# Boots Debian's kernel under qemu (TCG) with vivid and runs v4l2check on
# /dev/video0; installs the host packages it needs when missing and root.
test-v4l2:
	GO='$(GO)' bash board/vm/run-v4l2-test.sh
