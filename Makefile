# discotrace build. The BPF objects are generated with Debian's clang-19 and committed, so
# `make build` and `make test` need only Go; `make generate` needs clang-19 and llvm-strip-19.
GO ?= go

.PHONY: all generate check-generate build test test-host e2e fuzz bench bench-decode vmlinux

all: build

# Regenerate the bpf2go objects and Go types from bpf/.
generate:
	$(GO) generate ./tracer/

# CI: the committed objects must be exactly what the committed sources compile to.
check-generate: generate
	git diff --exit-code --stat -- tracer/discotrace_bpfel.go tracer/discotrace_bpfel.o

build:
	$(GO) build -o bin/discotrace ./cmd/discotrace

# The shared captures the decoder's tests read (shared/ beside the checkout).
export DISCOTRACE_TESTDATA ?= $(abspath $(CURDIR)/../shared/testdata)

# Everything CI runs: the tests on this machine's kernel, bounded fuzzing, and the tracer's
# tests on stock Debian kernels under qemu, amd64 and arm64. Run as root: the kernel tests
# skip without it.
test: test-host e2e fuzz vmtest vmtest-arm64

# vet (built for amd64 and for arm64), then every package's tests on the running kernel.
# -p 1: the kernel tests of different packages compare host-wide counters (/proc/net/snmp),
# so they must not overlap.
test-host:
	$(GO) vet ./...
	GOARCH=arm64 $(GO) vet ./...
	$(GO) test -p 1 -count=1 ./...

# The end-to-end fault matrix: real discovery nodes in network namespaces, faults injected
# with nft, traced by the discotrace binary. Needs root, iproute2, nftables and (for the
# second discv5 implementation) node and npm; a missing one fails the run.
e2e:
	cd e2e/js && npm ci --no-audit --no-fund
	$(GO) test -tags e2e -count=1 -v ./e2e/

# Each fuzz target for FUZZTIME executions (they must never panic on any input).
# FUZZTIME is a count, not a duration: with a duration, Go's fuzz coordinator can read its
# own deadline before the workers' context sees it and then fails the run with "context
# deadline exceeded" although nothing crashed (internal/fuzz.CoordinateFuzzing; CI hit it).
# A count has no deadline. 200000 executions take about 20 s per target on 2 cores.
# Inputs are kept as found (-fuzzminimizetime 0): minimizing kilobyte-sized capture seeds
# stalls the workers for seconds and teaches the run nothing.
FUZZTIME ?= 200000x
# Each target as package:name (go test -fuzz runs one target of one package at a time).
FUZZ_TARGETS = decode/discv5:FuzzV5Header decode/discv4:FuzzV4Decode decode/capture:FuzzReadCapture decode:FuzzDecoderFeed ndjson:FuzzNDJSONEncoder
fuzz:
	@for pt in $(FUZZ_TARGETS); do \
		p=$${pt%%:*}; t=$${pt#*:}; \
		echo "fuzz $$t in ./$$p for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 0 ./$$p/ || exit 1; \
	done

# Speed and cost figures (printed, never asserted): decoder rates, then what tracing costs.
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./decode/...
	bench/run.sh

# `discotrace decode` of 600,000 packets from 100,000 peers and a flood (bench/decodeload):
# packets/s, CPU and peak RSS of this tree's binary, three runs; BASELINE=path/to/discotrace
# runs another binary beside it in every run. No root needed.
bench-decode:
	$(GO) run ./bench/decodeload -runs 3 $(if $(BASELINE),-baseline $(BASELINE))
	$(GO) run ./bench/decodeload -hostile -runs 3 $(if $(BASELINE),-baseline $(BASELINE))

include vmtest/vmtest.mk

# Refresh the CO-RE kernel types from the running kernel (rarely needed: see bpf/headers/README.md).
vmlinux:
	bpftool btf dump file /sys/kernel/btf/vmlinux format c > bpf/headers/vmlinux.h
