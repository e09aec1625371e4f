package main

import (
	"os"
	"runtime/debug"
)

// decodeMemoryLimit is the soft limit on the Go runtime's memory while `decode` runs.
// The decoder's tables are bounded by count and hold about 22 MiB when full
// (bench/decodeprof); with no limit the heap grows to twice what is in use before each
// collection (GOGC=100). At 40 MiB the collector runs sooner instead: on 100,000 peers
// and a flood, 62 MiB of RSS instead of 86, for about 1.4 times the CPU (bench/README.md).
// `report` keeps its own tables beside the decoder's and is left without one.
const decodeMemoryLimit = 40 << 20

// limitDecodeMemory sets decodeMemoryLimit unless the operator chose a limit with
// GOMEMLIMIT ("off" for none), and returns what puts the previous limit back.
func limitDecodeMemory() (restore func()) {
	if _, set := os.LookupEnv("GOMEMLIMIT"); set {
		return func() {}
	}
	prev := debug.SetMemoryLimit(decodeMemoryLimit)
	return func() { debug.SetMemoryLimit(prev) }
}
