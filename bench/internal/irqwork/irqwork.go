// Package irqwork counts the host's irq_work interrupts, which is what a BPF ring buffer
// wakeup of its reader costs the CPU that submits the record: the benchmarks print how
// many a load raised.
package irqwork

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Count returns the "IRQ work interrupts" line of /proc/interrupts (IWI on x86, an IPI
// line on arm64) summed over the CPUs. It counts every irq_work of the host, not only the
// tracer's.
func Count() (uint64, error) {
	f, err := os.Open("/proc/interrupts")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if !strings.HasSuffix(sc.Text(), "IRQ work interrupts") {
			continue
		}
		var sum uint64
		for _, s := range strings.Fields(sc.Text())[1:] {
			n, err := strconv.ParseUint(s, 10, 64)
			if err != nil {
				break // the description after the per-CPU counts
			}
			sum += n
		}
		return sum, nil
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("/proc/interrupts has no \"IRQ work interrupts\" line")
}
