package main

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// debugExitPort is the I/O port of qemu's isa-debug-exit device as the runner configures it
// (-device isa-debug-exit,iobase=0xf4,iosize=0x04). Debian's kernels have no /dev/port, so
// the write is an OUT instruction after ioperm.
const debugExitPort = 0xf4

// outl writes value to an x86 I/O port (outl_amd64.s).
func outl(port uint16, value uint32)

// debugExit makes qemu exit with status (value<<1)|1. It returns only if it could not: no
// permission for the port, or (on a machine without the device) the write had no effect.
func debugExit(value uint32) error {
	if err := unix.Ioperm(debugExitPort, 4, 1); err != nil {
		return fmt.Errorf("ioperm 0x%x: %w", debugExitPort, err)
	}
	outl(debugExitPort, value)
	return fmt.Errorf("wrote %d to port 0x%x but the machine is still running: is isa-debug-exit missing?", value, debugExitPort)
}
