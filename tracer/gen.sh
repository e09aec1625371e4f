#!/bin/sh
# Regenerates discotrace_bpfel.o and discotrace_bpfel.go from ../bpf with bpf2go and
# Debian's clang-19 (run by `go generate`, i.e. `make generate`).
#
# It compiles in a fixed directory, not in the checkout: clang's BTF output (the order of
# its type strings) changes with the length of the source and output paths, so compiling
# in place would give different bytes in every clone and CI's comparison of the committed
# objects with their sources (make check-generate) would fail for no reason.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
build=/tmp/discotrace-bpf2go

exec 9>"$build.lock"
flock 9 # one generation at a time uses the fixed directory
rm -rf "$build"
mkdir -p "$build/tracer"
cp -R "$repo/bpf" "$build/bpf"
# The bpf2go that go.mod pins, built outside the fixed directory's module-less tree.
(cd "$repo" && go build -o "$build/bpf2go" github.com/cilium/ebpf/cmd/bpf2go)
cd "$build/tracer"
"$build/bpf2go" -go-package tracer -tags linux -cc clang-19 -strip llvm-strip-19 -target bpfel \
	-cflags "-O2 -mcpu=v3 -Wall -Werror" \
	-type dt_event -type dt_kind -type dt_flag -type dt_icmp_dir -type dt_limits -type dt_inferred_reason \
	discotrace ../bpf/discotrace.bpf.c -- -I../bpf/headers
cp discotrace_bpfel.o discotrace_bpfel.go "$here/"
rm -rf "$build"
