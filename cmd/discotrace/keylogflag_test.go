package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDecodeKeylog: --keylog writes the key log beside an output that is the same as
// without it, narrows an existing file to mode 0600, and never writes the node key.
func TestDecodeKeylog(t *testing.T) {
	path := testCapture(t, "devp2p-discovery.pcap")
	without, err := runCLI(t, path, "--nodekey", testKeyA)
	if err != nil {
		t.Fatal(err)
	}
	kl := filepath.Join(t.TempDir(), "keys")
	if err := os.WriteFile(kl, []byte("old content\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	with, err := runCLI(t, path, "--nodekey", testKeyA, "--keylog", kl)
	if err != nil {
		t.Fatal(err)
	}
	if with != without {
		t.Error("--keylog changed decode's output")
	}
	fi, err := os.Stat(kl)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key log mode %v, want 0600", fi.Mode().Perm())
	}
	b, err := os.ReadFile(kl)
	if err != nil {
		t.Fatal(err)
	}
	log := string(b)
	if strings.Contains(log, "old content") || strings.Contains(log, testKeyA) {
		t.Errorf("key log keeps the old content or holds the node key:\n%s", log)
	}
	if strings.Count(log, "DISCV5_LOCAL_ID ") != 1 || strings.Count(log, "DISCV5_SESSION ") != 2 {
		t.Errorf("key log: want A's ID and the 2 sessions A answered:\n%s", log)
	}
	if _, err := runCLI(t, path, "--keylog", filepath.Join(t.TempDir(), "no", "such", "dir")); err == nil || !strings.Contains(err.Error(), "cannot create the key log") {
		t.Errorf("--keylog into a missing folder: %v", err)
	}
}

// TestTraceKeylogNeedsDecoder: trace --raw decodes nothing, so --keylog is refused before
// any hook is attached.
func TestTraceKeylogNeedsDecoder(t *testing.T) {
	_, err := runCommand(newTraceCmd(), "--raw", "--keylog", filepath.Join(t.TempDir(), "keys"))
	if err == nil || !strings.Contains(err.Error(), "--keylog needs the decoder") {
		t.Fatalf("trace --raw --keylog: %v", err)
	}
}
