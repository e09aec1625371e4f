# discotrace build. The BPF objects are generated with Debian's clang-19 and committed, so
# `make build` and `make test` need only Go; `make generate` needs clang-19 and llvm-strip-19.
GO ?= go

.PHONY: all generate check-generate build test vmlinux

all: build

# Regenerate the bpf2go objects and Go types from bpf/.
generate:
	$(GO) generate ./tracer/

# CI: the committed objects must be exactly what the committed sources compile to.
check-generate: generate
	git diff --exit-code --stat -- tracer/discotrace_bpfel.go tracer/discotrace_bpfel.o

build:
	$(GO) build -o bin/discotrace ./cmd/discotrace

# The kernel tests need root; without it they skip and say so.
test:
	$(GO) vet ./...
	$(GO) test ./...

# Refresh the CO-RE kernel types from the running kernel (rarely needed: see bpf/headers/README.md).
vmlinux:
	bpftool btf dump file /sys/kernel/btf/vmlinux format c > bpf/headers/vmlinux.h
