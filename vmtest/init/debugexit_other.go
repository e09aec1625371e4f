//go:build !amd64

package main

import "errors"

// debugExit needs an x86 I/O port; other guests report through the console marker only.
func debugExit(uint32) error {
	return errors.New("isa-debug-exit exists only on x86")
}
