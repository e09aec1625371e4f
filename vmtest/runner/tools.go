package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
)

// toolPackages names the Debian package to install for tools tests commonly shell out to.
var toolPackages = map[string]string{
	"ip":      "iproute2",
	"tc":      "iproute2",
	"ss":      "iproute2",
	"nft":     "nftables",
	"tcpdump": "tcpdump",
	"bpftool": "bpftool",
}

// addHostTools copies host programs into the archive at their host paths, with the shared
// libraries and dynamic loader ldd says they need, so tests that shell out (netlab runs
// iproute2's ip) work in the guest. Guest and host then run the same userspace binaries on
// different kernels, which is the point of the matrix.
func addHostTools(c *cpioWriter, tools []string) error {
	added := map[string]bool{}
	for _, tool := range tools {
		bin, err := exec.LookPath(tool)
		if err != nil {
			hint := ""
			if pkg, ok := toolPackages[tool]; ok {
				hint = fmt.Sprintf(" (apt-get install %s)", pkg)
			}
			return fmt.Errorf("TOOLS: %s is not installed on this host%s", tool, hint)
		}
		bin, err = filepath.Abs(bin)
		if err != nil {
			return err
		}
		libs, err := sharedLibraries(bin)
		if err != nil {
			return err
		}
		for _, p := range append([]string{bin}, libs...) {
			if added[p] {
				continue
			}
			added[p] = true
			c.File(p, p, 0o755)
		}
	}
	return nil
}

// sharedLibraries lists the absolute paths ldd prints for a binary (libraries and the
// dynamic loader); a static binary has none.
func sharedLibraries(bin string) ([]string, error) {
	out, err := exec.Command("ldd", bin).Output()
	if err != nil {
		// ldd exits 1 for static binaries ("not a dynamic executable").
		if bytes.Contains(out, []byte("not a dynamic executable")) || len(out) == 0 {
			return nil, nil
		}
		return nil, fmt.Errorf("ldd %s: %w", bin, err)
	}
	var libs []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.Contains(line, "not found") {
			return nil, fmt.Errorf("ldd %s: %s", bin, line)
		}
		// "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)"
		if _, after, ok := strings.Cut(line, "=> "); ok {
			line = after
		}
		if p, _, ok := strings.Cut(line, " ("); ok && strings.HasPrefix(p, "/") {
			libs = append(libs, p)
		}
	}
	return libs, sc.Err()
}
