package tracer

// The BPF objects are generated from ../bpf with Debian's clang-19 and committed, so that
// `go build` needs no clang. `make generate` runs this; CI regenerates and diffs.
//go:generate go tool bpf2go -tags linux -cc clang-19 -strip llvm-strip-19 -target bpfel -cflags "-O2 -mcpu=v3 -Wall -Werror" -type dt_event -type dt_kind -type dt_flag -type dt_icmp_dir -type dt_limits discotrace ../bpf/discotrace.bpf.c -- -I../bpf/headers
