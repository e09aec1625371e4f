package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// committedObjectHash is the SHA-256 of the BPF object as committed, read from the file.
func committedObjectHash(t *testing.T) string {
	t.Helper()
	obj, err := os.ReadFile(filepath.Join("..", "..", "tracer", "discotrace_bpfel.o"))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(obj)
	return hex.EncodeToString(sum[:])
}

// `discotrace version` names the Go it was built with, the platform and the BPF object it
// carries, the same object as the committed file; the text has one labelled line each.
func TestVersionReportsTheBuild(t *testing.T) {
	out, err := runCommand(newVersionCmd(), "--json")
	if err != nil {
		t.Fatal(err)
	}
	var v versionInfo
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("--json: %v: %s", err, out)
	}
	if v.Go != runtime.Version() || v.Platform != runtime.GOOS+"/"+runtime.GOARCH || v.Version == "" {
		t.Errorf("version %+v: want go %s on %s/%s and a module version", v, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	}
	if want := committedObjectHash(t); v.BPFObjectSHA256 != want {
		t.Errorf("bpf_object_sha256 %s, want %s (sha256 of tracer/discotrace_bpfel.o)", v.BPFObjectSHA256, want)
	}

	text, err := runCommand(newVersionCmd())
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	for i, prefix := range []string{"discotrace " + v.Version, "commit ", "go         " + v.Go + " " + v.Platform, "bpf object sha256:" + v.BPFObjectSHA256} {
		if i >= len(lines) || !strings.HasPrefix(lines[i], prefix) {
			t.Errorf("version line %d: want it to start %q; got:\n%s", i+1, prefix, text)
		}
	}
	if _, err := runCommand(newVersionCmd(), "extra"); err == nil {
		t.Error("version accepted an argument")
	}
}

// A binary built in a git checkout names its commit, and says +dirty when the work tree
// had changes (as go build records them: `git status --porcelain` not empty).
func TestVersionOfABuiltBinaryNamesItsCommit(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the command")
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(root, ".git")); err != nil || !fi.IsDir() {
		// go build stamps no VCS state in a git worktree (.git is a file) or outside git.
		t.Skip("not the main work tree of a git clone: go build records no commit here")
	}
	git := func(args ...string) string {
		out, err := exec.Command("git", append([]string{"-C", root}, args...)...).Output()
		if err != nil {
			t.Skipf("git %v: %v", args, err)
		}
		return strings.TrimSpace(string(out))
	}
	head, status := git("rev-parse", "HEAD"), git("status", "--porcelain")
	bin := filepath.Join(t.TempDir(), "discotrace")
	build := exec.Command("go", "build", "-buildvcs=true", "-o", bin, "./cmd/discotrace")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "version", "--json").Output()
	if err != nil {
		t.Fatal(err)
	}
	var v versionInfo
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if v.Commit != head {
		t.Errorf("commit %q, want HEAD %s", v.Commit, head)
	}
	if v.Dirty == nil || *v.Dirty != (status != "") {
		t.Errorf("dirty %v, want %v (git status --porcelain: %q)", v.Dirty, status != "", status)
	}
	if v.BPFObjectSHA256 != committedObjectHash(t) {
		t.Errorf("the built binary carries BPF object %s, not the committed one", v.BPFObjectSHA256)
	}
}
