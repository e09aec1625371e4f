// Package job is the contract between the vmtest runner on the host and the /init it puts in
// the guest: where the job description lives in the initramfs, what it holds, and the marker
// lines the init prints on the serial console.
package job

import (
	"fmt"
	"regexp"
	"strconv"
)

// Path is where the runner stores the job description in the initramfs. It travels as a file
// rather than on the kernel command line: x86 limits the command line to 2048 bytes and the
// kernel's own quoting cannot carry arbitrary test arguments.
const Path = "/vmtest/job.json"

// Job says what the guest's /init runs.
type Job struct {
	// Args is the command to run: Args[0] is an absolute path inside the guest.
	Args []string `json:"args"`
	// Env is added to the child's environment (KEY=VALUE).
	Env []string `json:"env,omitempty"`
	// Dir is the child's working directory (a test binary expects its package directory).
	Dir string `json:"dir,omitempty"`
	// Modules are kernel module files to load, in order (dependencies first).
	Modules []string `json:"modules,omitempty"`
}

// Marker lines the init prints on the console. The runner parses them; humans read them.
const (
	// BootedPrefix is followed by the guest's uptime when /init started, in seconds.
	BootedPrefix = "VMTEST-BOOTED uptime="
	// ExitPrefix is followed by the exit status of the job (0-255; 128+n for signal n).
	ExitPrefix = "VMTEST-EXIT status="
)

// BootedLine formats the marker printed when /init starts.
func BootedLine(uptimeSeconds float64) string {
	return fmt.Sprintf("%s%.2f", BootedPrefix, uptimeSeconds)
}

// ExitLine formats the marker printed when the job has finished.
func ExitLine(status int) string {
	return fmt.Sprintf("%s%d", ExitPrefix, status)
}

// The console may carry escape sequences and carriage returns around the markers (SeaBIOS
// writes some), so they are matched anywhere in a line.
var (
	bootedRE = regexp.MustCompile(regexp.QuoteMeta(BootedPrefix) + `([0-9]+\.[0-9]+)`)
	exitRE   = regexp.MustCompile(regexp.QuoteMeta(ExitPrefix) + `([0-9]+)`)
)

// ParseBooted returns the uptime in a BootedLine found in line.
func ParseBooted(line string) (float64, bool) {
	m := bootedRE.FindStringSubmatch(line)
	if m == nil {
		return 0, false
	}
	v, err := strconv.ParseFloat(m[1], 64)
	return v, err == nil
}

// ParseExit returns the status in an ExitLine found in line.
func ParseExit(line string) (int, bool) {
	m := exitRE.FindStringSubmatch(line)
	if m == nil {
		return 0, false
	}
	v, err := strconv.Atoi(m[1])
	return v, err == nil
}

// DebugExitValue is what the init writes to qemu's isa-debug-exit port for a job status;
// qemu then exits with (value<<1)|1. Statuses above 127 would not fit qemu's 8-bit exit
// code and are clamped: the console marker keeps the exact value.
func DebugExitValue(status int) uint32 {
	if status < 0 || status > 127 {
		return 127
	}
	return uint32(status)
}
