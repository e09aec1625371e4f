package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The archive is checked with GNU cpio itself: it must list exactly the entries written,
// parents first, and extract the same bytes.
func TestCPIOWriterMatchesGNUCpio(t *testing.T) {
	if _, err := exec.LookPath("cpio"); err != nil {
		t.Skip("needs GNU cpio on the PATH (apt-get install cpio)")
	}
	host := filepath.Join(t.TempDir(), "host.bin")
	if err := os.WriteFile(host, []byte("hello, guest"), 0o644); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	c := newCPIOWriter(&buf)
	c.CharDev("/dev/console", 0o600, 5, 1)
	c.Bytes("/vmtest/job.json", 0o644, []byte("{}"))
	c.File("/vmtest/bin/x", host, 0o755)
	c.Symlink("/lib64/ld.so", "/lib/x86_64-linux-gnu/ld.so")
	c.Dir("/vmtest/bin") // already there: must not be written twice
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if buf.Len()%4 != 0 {
		t.Errorf("archive length %d is not a multiple of 4", buf.Len())
	}

	list := exec.Command("cpio", "-it", "--quiet")
	list.Stdin = bytes.NewReader(buf.Bytes())
	out, err := list.Output()
	if err != nil {
		t.Fatalf("cpio -it: %v", err)
	}
	want := "dev\ndev/console\nvmtest\nvmtest/job.json\nvmtest/bin\nvmtest/bin/x\nlib64\nlib64/ld.so\n"
	if string(out) != want {
		t.Errorf("cpio lists\n%s\nwant\n%s", out, want)
	}

	dir := t.TempDir()
	extract := exec.Command("cpio", "-id", "--quiet", "--no-absolute-filenames", "vmtest/*")
	extract.Dir = dir
	extract.Stdin = bytes.NewReader(buf.Bytes())
	if out, err := extract.CombinedOutput(); err != nil {
		t.Fatalf("cpio -id: %v: %s", err, out)
	}
	got, err := os.ReadFile(filepath.Join(dir, "vmtest/bin/x"))
	if err != nil || string(got) != "hello, guest" {
		t.Errorf("extracted file = %q, %v", got, err)
	}
	st, err := os.Stat(filepath.Join(dir, "vmtest/bin/x"))
	if err != nil || st.Mode().Perm() != 0o755 {
		t.Errorf("extracted mode = %v, %v; want 0755", st.Mode(), err)
	}
	if json, _ := os.ReadFile(filepath.Join(dir, "vmtest/job.json")); strings.TrimSpace(string(json)) != "{}" {
		t.Errorf("job.json = %q", json)
	}
}
