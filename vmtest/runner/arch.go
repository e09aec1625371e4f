package main

import (
	"debug/elf"
	"fmt"
	"os/exec"
	"runtime"
	"sort"
	"strings"
)

// guestArch is what differs between the architectures a guest can have: the qemu that
// emulates it, the machine and console, how the guest's /init hands back the job's status,
// and the binaries that run in it (GOARCH, ELF machine). Names are Go's and Debian's (they
// agree for both).
type guestArch struct {
	Name        string // GOARCH and Debian architecture, e.g. "arm64"
	Qemu        string // qemu binary
	QemuPackage string // Debian package that installs it
	Machine     []string
	Console     string // the serial console's device name in the guest
	ELF         elf.Machine
	// DebugExit: the machine has isa-debug-exit, so qemu's exit code carries the job's
	// status besides the console marker. Without it the guest powers off (PSCI SYSTEM_OFF
	// on arm64, qemu exits 0) and the console marker alone carries the status.
	DebugExit bool
}

var guestArches = map[string]*guestArch{
	"amd64": {
		Name: "amd64", Qemu: "qemu-system-x86_64", QemuPackage: "qemu-system-x86",
		Machine: []string{"-cpu", "max",
			"-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"},
		Console: "ttyS0", ELF: elf.EM_X86_64, DebugExit: true,
	},
	"arm64": {
		Name: "arm64", Qemu: "qemu-system-aarch64", QemuPackage: "qemu-system-arm",
		// cortex-a72 (ARMv8.0) rather than max: max adds pointer authentication, whose
		// emulation under TCG slows every function call of the kernel, and nothing the
		// tracer uses (BPF JIT, trampolines, kprobes) needs a newer CPU.
		Machine: []string{"-machine", "virt", "-cpu", "cortex-a72"},
		Console: "ttyAMA0", ELF: elf.EM_AARCH64,
	},
}

// lookupArch returns the architecture named by ARCH=; "" means the machine's own.
func lookupArch(name string) (*guestArch, error) {
	if name == "" {
		name = runtime.GOARCH
	}
	if a, ok := guestArches[name]; ok {
		return a, nil
	}
	var names []string
	for n := range guestArches {
		names = append(names, n)
	}
	sort.Strings(names)
	return nil, fmt.Errorf("ARCH=%s: the harness boots %s guests", name, strings.Join(names, " and "))
}

// native reports whether the guest runs this machine's architecture (its binaries and
// host tools run in the guest unchanged).
func (a *guestArch) native() bool { return a.Name == runtime.GOARCH }

func (a *guestArch) checkQemu() error {
	if _, err := exec.LookPath(a.Qemu); err != nil {
		return fmt.Errorf("%s is not installed: apt-get install %s", a.Qemu, a.QemuPackage)
	}
	return nil
}
