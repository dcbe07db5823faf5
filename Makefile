# ipcd — see README.md. Every target works from a fresh clone with Go installed.
GO       ?= go
BIN      := bin
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.version=$(VERSION)
export CGO_ENABLED ?= 0

.PHONY: all build test test-adapt test-interop test-record demo bench fmt vet clean demo-check

all: build

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ipcd ./cmd/ipcd
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ipcapp ./cmd/ipcapp

# The race detector needs cgo; the shipped binaries do not. Tests that
# measure what the device sustains (files tagged !race) run in a second
# pass without it.
test: vet
	CGO_ENABLED=1 $(GO) test -race -count=1 -timeout 15m ./...
	$(GO) test -count=1 -timeout 5m -run 'Flood' ./cmd/ipcd/
	$(GO) test -count=1 -timeout 5m -run 'WANLoss' ./p2p/

# Per-viewer adaptation through a 1 Mbit/s token bucket between network
# namespaces (root, ip, tc, ffmpeg), counting frames decoded in real time:
# without the race detector.
test-adapt:
	$(GO) test -count=1 -timeout 5m -run 'TestAdaptTBF' -v ./p2p/

# SIGKILL of a recording ipcd at 100 random moments (make test runs 8):
# every segment decodes with ffprobe, at most a second lost per kill.
test-record:
	TEST_RECORD_KILL=1 $(GO) test -count=1 -timeout 10m -run 'TestRecordKill' -v ./cmd/ipcd/

# go2rtc's Tuya client against ipcd: its own module (test/interop), run as
# root since it makes a network namespace; needs mosquitto and ffprobe.
test-interop:
	cd test/interop && $(GO) vet . && $(GO) test -count=1 -timeout 10m -v .

# third_party/paho.mqtt.golang is its own module (see its README.md).
vet:
	$(GO) vet ./...
	cd third_party/paho.mqtt.golang && $(GO) vet ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

# ipcd on the embedded broker with the sample media and a pre-provisioned
# activation, and the browser viewer; prints the URL. Ctrl-C stops both.
demo: build
	@bash scripts/demo.sh

# Starts the demo, records 5 s with ipcapp and checks the file with ffprobe.
demo-check: build
	bash scripts/demo-check.sh

# Numbers, not verdicts: Go benchmarks plus the ipcapp bench scenario, and
# memory per viewer through a pipe source. Builds the board binaries first
# so that their sizes are printed.
bench: build cross
	bash scripts/bench.sh

clean:
	rm -rf $(BIN)
include build/cross.mk
include build/v4l2.mk
