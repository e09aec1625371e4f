package tracer

import (
	"bufio"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
)

// kernelSymbols are the kernel's text symbols from /proc/kallsyms, sorted by address: to
// name the function that dropped a packet, and to give the BPF side the address ranges of
// the few functions it recognises by caller address.
type kernelSymbols struct {
	addrs []uint64
	names []string
}

// loadKernelSymbols reads /proc/kallsyms. Without CAP_SYSLOG (or with kptr_restrict) the
// addresses read as zero: then it returns an empty table and the reason.
func loadKernelSymbols() (*kernelSymbols, error) {
	f, err := os.Open("/proc/kallsyms")
	if err != nil {
		return &kernelSymbols{}, fmt.Errorf("read kernel symbols: %w", err)
	}
	defer f.Close()
	type sym struct {
		addr uint64
		name string
	}
	var syms []sym
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// "ffffffff820b0150 T icmp_rcv" or "... t name\t[module]"
		line := sc.Text()
		if len(line) < 20 || line[16] != ' ' || line[18] != ' ' {
			continue
		}
		switch line[17] {
		case 't', 'T':
		default:
			continue
		}
		addr, err := strconv.ParseUint(line[:16], 16, 64)
		if err != nil || addr == 0 {
			continue
		}
		name, _, _ := strings.Cut(line[19:], "\t")
		syms = append(syms, sym{addr, name})
	}
	if err := sc.Err(); err != nil {
		return &kernelSymbols{}, fmt.Errorf("read kernel symbols: %w", err)
	}
	if len(syms) == 0 {
		return &kernelSymbols{}, fmt.Errorf("/proc/kallsyms shows no addresses (kernel.kptr_restrict, or no CAP_SYSLOG)")
	}
	sort.Slice(syms, func(i, j int) bool { return syms[i].addr < syms[j].addr })
	ks := &kernelSymbols{addrs: make([]uint64, len(syms)), names: make([]string, len(syms))}
	for i, s := range syms {
		ks.addrs[i], ks.names[i] = s.addr, s.name
	}
	return ks, nil
}

// name returns the function containing addr, or "" when unknown.
func (ks *kernelSymbols) name(addr uint64) string {
	i := sort.Search(len(ks.addrs), func(i int) bool { return ks.addrs[i] > addr }) - 1
	if i < 0 || addr == 0 {
		return ""
	}
	return ks.names[i]
}

// span returns the address range [lo, hi) of the function called name: from its symbol to
// the next symbol. ok is false when the symbol is not there.
func (ks *kernelSymbols) span(name string) (lo, hi uint64, ok bool) {
	for i, n := range ks.names {
		if n == name && i+1 < len(ks.addrs) {
			return ks.addrs[i], ks.addrs[i+1], true
		}
	}
	return 0, 0, false
}
