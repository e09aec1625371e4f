package tracer

// The BPF objects are generated from ../bpf with Debian's clang-19 and committed, so that
// `go build` needs no clang. `make generate` runs this; CI regenerates and diffs. gen.sh
// says why it compiles in a fixed directory.
//go:generate sh gen.sh
