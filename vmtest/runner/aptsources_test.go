package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A machine with a local mirror, a vendor repository on the same suite and the security
// archive behind an apt proxy: the Debian ones are found by their Release labels.
func TestMirrorsOfTakesTheMachinesDebianRepositories(t *testing.T) {
	targets := []indexTarget{
		{RepoURI: "https://download.docker.com/linux/debian/", Release: "bookworm", Origin: "Docker", Label: "Docker CE", TargetOf: "deb", Component: "stable"},
		{RepoURI: "http://apt.example:3142/debian-security/", Release: "bookworm-security", Origin: "Debian", Label: "Debian-Security", TargetOf: "deb", Component: "main"},
		{RepoURI: "http://mirror.example/debian/", Release: "bookworm", Origin: "Debian", Label: "Debian", TargetOf: "deb-src", Component: "main"},
		{RepoURI: "http://mirror.example/debian/", Release: "bookworm", Origin: "Debian", Label: "Debian", TargetOf: "deb", Component: "contrib"},
		{RepoURI: "http://other.example/debian/", Release: "bookworm", Origin: "Vendor", Label: "Debian", TargetOf: "deb", Component: "main"},
		{RepoURI: "http://mirror.example/debian/", Release: "bookworm", Origin: "Debian", Label: "Debian", TargetOf: "deb", Component: "main"},
		{RepoURI: "http://second.example/debian/", Release: "bookworm-updates", Origin: "Debian", Label: "Debian", TargetOf: "deb", Component: "main"},
	}
	got := mirrorsOf(targets)
	want := debianMirrors{Archive: "http://mirror.example/debian/", Security: "http://apt.example:3142/debian-security/"}
	if got != want {
		t.Fatalf("mirrorsOf = %+v, want %+v", got, want)
	}
}

func TestWriteSourcesListFillsInTheMirrors(t *testing.T) {
	dir := t.TempDir()
	tmpl := filepath.Join(dir, "apt-sources.list")
	out := filepath.Join(dir, "apt-arm64", "sources.list")
	os.WriteFile(tmpl, []byte("# uses $MIRROR\ndeb $MIRROR bookworm main\n\ndeb $SECURITY_MIRROR bookworm-security main\n"), 0o644)

	m := debianMirrors{Archive: "http://mirror.example/debian/", Security: "http://mirror.example/debian-security/"}
	if err := writeSourcesList(tmpl, out, m); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(out)
	var entries []string
	for _, line := range strings.Split(string(b), "\n") {
		if line != "" && !strings.HasPrefix(line, "#") {
			entries = append(entries, line)
		}
	}
	want := []string{"deb http://mirror.example/debian/ bookworm main", "deb http://mirror.example/debian-security/ bookworm-security main"}
	if strings.Join(entries, "\n") != strings.Join(want, "\n") {
		t.Fatalf("sources list entries:\n%s\nwant:\n%s", strings.Join(entries, "\n"), strings.Join(want, "\n"))
	}

	// Unchanged text leaves the file alone: its age tells when the mirrors last changed.
	old := mustStat(t, out).ModTime()
	os.Chtimes(out, old.Add(-3600e9), old.Add(-3600e9))
	if err := writeSourcesList(tmpl, out, m); err != nil {
		t.Fatal(err)
	}
	if !mustStat(t, out).ModTime().Equal(old.Add(-3600e9)) {
		t.Error("writeSourcesList rewrote a sources list whose text had not changed")
	}
}

func TestWriteSourcesListNamesTheMissingMirror(t *testing.T) {
	dir := t.TempDir()
	tmpl := filepath.Join(dir, "apt-sources.list")
	os.WriteFile(tmpl, []byte("deb $MIRROR bookworm main\ndeb $SECURITY_MIRROR bookworm-security main\n"), 0o644)
	err := writeSourcesList(tmpl, filepath.Join(dir, "out"), debianMirrors{Archive: "http://mirror.example/debian/"})
	if err == nil || !strings.Contains(err.Error(), "$SECURITY_MIRROR") || !strings.Contains(err.Error(), "SECURITY_MIRROR=") {
		t.Fatalf("want an error naming $SECURITY_MIRROR and the setting, got %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "out")); err == nil {
		t.Error("a sources list was written without a security mirror")
	}
}

func mustStat(t *testing.T, p string) os.FileInfo {
	t.Helper()
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return st
}
