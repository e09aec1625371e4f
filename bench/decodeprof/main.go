// Command decodeprof decodes a capture in-process, as `discotrace decode` does (NDJSON
// rendered, written to nowhere), and profiles it: where the CPU goes, and what the
// decoder keeps. Every -every records it collects garbage and prints the heap still in
// use (the decoder's state at that point), and with -memprofile writes a heap profile
// there (FILE.N). It is the tool behind the memory figures of bench/README.md; the
// figures themselves come from bench/decodeload, which measures the real binary.
//
//	go run ./bench/decodeload -capture /tmp/load.pcap -runs 0
//	go run ./bench/decodeprof -node-id ID -memprofile /tmp/heap -cpuprofile /tmp/cpu /tmp/load.pcap
//	go tool pprof -sample_index=inuse_space -top /tmp/heap.300000
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/pprof"
	"time"

	"github.com/ethereum/go-ethereum/p2p/enode"

	"github.com/discotrace/discotrace/decode"
	"github.com/discotrace/discotrace/decode/capture"
	"github.com/discotrace/discotrace/decode/record"
	"github.com/discotrace/discotrace/decode/result"
	"github.com/discotrace/discotrace/ndjson"
)

func main() {
	cpu := flag.String("cpuprofile", "", "write a CPU profile here")
	mem := flag.String("memprofile", "", "write a heap profile every -every records, to FILE.N")
	every := flag.Int("every", 50000, "records between heap measurements (0: none)")
	nodeID := flag.String("node-id", "", "the local node's ID (hex), as decode --node-id")
	flag.Parse()
	if err := run(flag.Arg(0), *nodeID, *cpu, *mem, *every); err != nil {
		fmt.Fprintln(os.Stderr, "decodeprof:", err)
		os.Exit(2)
	}
}

func run(path, nodeID, cpu, mem string, every int) error {
	if path == "" {
		return fmt.Errorf("give a capture file")
	}
	cfg := decode.Config{Capture: true}
	if nodeID != "" {
		id, err := enode.ParseID(nodeID)
		if err != nil {
			return fmt.Errorf("-node-id: %w", err)
		}
		cfg.Identity.IDs = append(cfg.Identity.IDs, id)
	}
	in, err := os.Open(path)
	if err != nil {
		return err
	}
	defer in.Close()
	if cpu != "" {
		f, err := os.Create(cpu)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	runtime.MemProfileRate = 64 << 10
	dec := decode.NewDecoder(cfg)
	enc := ndjson.NewEncoder(bufio.NewWriter(io.Discard))
	var render ndjson.Renderer
	emit := func(ev result.Event) {
		if err := enc.Encode(render.Render(ev, false)); err != nil {
			panic(err) // io.Discard does not fail
		}
	}
	n := 0
	var peak float64
	start := time.Now()
	_, err = capture.ReadStats(in, func(r *record.Record) error {
		dec.Feed(r, emit)
		n++
		if every > 0 && n%every == 0 {
			runtime.GC()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			live := float64(ms.HeapAlloc) / (1 << 20)
			peak = max(peak, live)
			fmt.Printf("%d records: %.1f MiB in use after GC\n", n, live)
			if mem != "" {
				if err := writeHeap(fmt.Sprintf("%s.%d", mem, n)); err != nil {
					return err
				}
			}
		}
		return nil
	})
	dec.Flush(emit)
	fmt.Printf("%d records in %.2f s; at most %.1f MiB in use after GC\n", n, time.Since(start).Seconds(), peak)
	return err
}

func writeHeap(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.WriteHeapProfile(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
