package tracer

import (
	"crypto/sha256"
	"encoding/hex"
)

// ObjectHash returns the SHA-256, in hex, of the BPF object embedded in this binary (the
// bpf2go output it loads its programs from): which kernel programs a build carries,
// whatever its version says, to compare with `sha256sum tracer/discotrace_bpfel.o`.
func ObjectHash() string {
	sum := sha256.Sum256(_DiscotraceBytes)
	return hex.EncodeToString(sum[:])
}
