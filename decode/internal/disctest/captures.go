package disctest

import (
	"os"
	"path/filepath"
	"testing"
)

// CapturePath finds one of the shared captures (shared/testdata/pcap/NAME): under
// $DISCOTRACE_TESTDATA (the Makefile sets it), else in shared/testdata beside the
// checkout, which is found from the module root whatever the test's package directory.
// It fails rather than skips: the tests that read captures check exact counts.
func CapturePath(tb testing.TB, name string) string {
	tb.Helper()
	var dirs []string
	if env := os.Getenv("DISCOTRACE_TESTDATA"); env != "" {
		dirs = append(dirs, env)
	}
	if root, ok := moduleRoot(); ok {
		dirs = append(dirs, filepath.Join(root, "..", "shared", "testdata"))
	}
	for _, dir := range dirs {
		p := filepath.Join(dir, "pcap", name)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	tb.Fatalf("capture %s not found in %v: set DISCOTRACE_TESTDATA to the folder holding pcap/%s", name, dirs, name)
	return ""
}

// moduleRoot is the nearest directory above the working directory (a test's package
// directory) that holds go.mod.
func moduleRoot() (string, bool) {
	dir, err := os.Getwd()
	if err != nil {
		return "", false
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, true
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", false
		}
		dir = parent
	}
}

// FileExists reports whether a file (a capture, say) is there.
func FileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
