package main

import (
	"bufio"
	"bytes"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
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

// lookTool finds a host program TOOLS names, or says which package installs it.
func lookTool(tool string) (string, error) {
	bin, err := exec.LookPath(tool)
	if err != nil {
		hint := ""
		if pkg, ok := toolPackages[tool]; ok {
			hint = fmt.Sprintf(" (apt-get install %s)", pkg)
		}
		return "", fmt.Errorf("TOOLS: %s is not installed on this host%s", tool, hint)
	}
	return bin, nil
}

// addHostTools copies host programs into the archive at their host paths, with the shared
// libraries and dynamic loader ldd says they need, so tests that shell out (netlab runs
// iproute2's ip) work in the guest. Guest and host then run the same userspace binaries on
// different kernels, which is the point of the matrix.
func addHostTools(c *cpioWriter, tools []string) error {
	added := map[string]bool{}
	for _, tool := range tools {
		bin, err := lookTool(tool)
		if err != nil {
			return err
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

// addDebianTools brings TOOLS into a guest of another architecture, where the machine's own
// programs cannot run: it takes the same programs from Debian's packages for the guest's
// architecture. The packages are those that hold the machine's copy of each tool and of
// every library ldd says it loads (dpkg -S), downloaded for the guest's architecture with
// vmtest's own apt configuration and unpacked into a scratch root; the guest gets each
// tool with the libraries and loader its ELF headers name, found in that root.
func addDebianTools(c *cpioWriter, tools []string, src kernelSource) error {
	if len(tools) == 0 {
		return nil
	}
	pkgs := map[string]bool{}
	for _, tool := range tools {
		bin, err := lookTool(tool)
		if err != nil {
			return fmt.Errorf("%w; the %s guest gets the same Debian package's %s build", err, src.Arch.Name, src.Arch.Name)
		}
		libs, err := sharedLibraries(bin)
		if err != nil {
			return err
		}
		for _, p := range append([]string{bin}, libs...) {
			pkg, err := owningPackage(p)
			if err != nil {
				return fmt.Errorf("TOOLS: %s: %w", tool, err)
			}
			pkgs[pkg] = true
		}
	}
	apt, err := src.privateApt()
	if err != nil {
		return err
	}
	if err := apt.update(); err != nil {
		return err
	}
	dir, err := os.MkdirTemp(filepath.Join(src.CacheDir, "build"), "tools-"+src.Arch.Name+"-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	var names []string
	for p := range pkgs {
		names = append(names, p)
	}
	sort.Strings(names)
	logf("TOOLS for %s: fetching %s with %s", src.Arch.Name, strings.Join(names, " "), apt.name)
	dl := apt.command("apt-get", append([]string{"-q", "download"}, names...)...)
	dl.Dir = dir
	dl.Stdout, dl.Stderr = io.Discard, os.Stderr
	if err := dl.Run(); err != nil {
		return fmt.Errorf("TOOLS: apt-get download %s for %s: %w", strings.Join(names, " "), src.Arch.Name, err)
	}
	root := filepath.Join(dir, "root")
	debs, _ := filepath.Glob(filepath.Join(dir, "*.deb"))
	for _, deb := range debs {
		if out, err := exec.Command("dpkg-deb", "-x", deb, root).CombinedOutput(); err != nil {
			return fmt.Errorf("dpkg-deb -x %s: %v: %s", deb, err, out)
		}
	}
	added := map[string]bool{}
	for _, tool := range tools {
		guest := ""
		for _, d := range []string{"/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"} {
			if _, err := os.Lstat(filepath.Join(root, d, tool)); err == nil {
				guest = d + "/" + tool
				break
			}
		}
		if guest == "" {
			return fmt.Errorf("TOOLS: the %s packages %s hold no %s", src.Arch.Name, strings.Join(names, " "), tool)
		}
		if err := addFromRoot(c, root, guest, added); err != nil {
			return fmt.Errorf("TOOLS: %s for %s: %w", tool, src.Arch.Name, err)
		}
	}
	return nil
}

// addFromRoot adds the file at guest path p (a path inside root) and, for an ELF file, its
// loader and the libraries it needs, recursively, at the paths the loader searches.
func addFromRoot(c *cpioWriter, root, p string, added map[string]bool) error {
	if added[p] {
		return nil
	}
	added[p] = true
	host, err := resolveInRoot(root, p)
	if err != nil {
		return err
	}
	c.File(p, host, 0o755)
	f, err := elf.Open(host)
	if err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			b, err := io.ReadAll(prog.Open())
			if err != nil {
				return err
			}
			if err := addFromRoot(c, root, strings.TrimRight(string(b), "\x00"), added); err != nil {
				return err
			}
		}
	}
	needed, err := f.ImportedLibraries()
	if err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	libDirs, _ := filepath.Glob(filepath.Join(root, "lib", "*-linux-gnu*"))
	more, _ := filepath.Glob(filepath.Join(root, "usr", "lib", "*-linux-gnu*"))
	libDirs = append(libDirs, more...)
	for _, lib := range needed {
		found := ""
		for _, d := range libDirs {
			if _, err := os.Lstat(filepath.Join(d, lib)); err == nil {
				found = "/" + filepath.ToSlash(mustRel(root, filepath.Join(d, lib)))
				break
			}
		}
		if found == "" {
			return fmt.Errorf("%s needs %s, which none of the downloaded packages holds", p, lib)
		}
		if err := addFromRoot(c, root, found, added); err != nil {
			return err
		}
	}
	return nil
}

// resolveInRoot follows symbolic links of the guest path p inside root (absolute links are
// taken relative to root, never to the machine's own files) and returns the file's host path.
func resolveInRoot(root, p string) (string, error) {
	cur := p
	for range 16 {
		host := filepath.Join(root, cur)
		st, err := os.Lstat(host)
		if err != nil {
			return "", err
		}
		if st.Mode()&os.ModeSymlink == 0 {
			return host, nil
		}
		target, err := os.Readlink(host)
		if err != nil {
			return "", err
		}
		if !filepath.IsAbs(target) {
			target = filepath.Join(filepath.Dir(cur), target)
		}
		cur = target
	}
	return "", fmt.Errorf("%s: too many symbolic links", p)
}

func mustRel(base, p string) string {
	rel, err := filepath.Rel(base, p)
	if err != nil {
		panic(err)
	}
	return rel
}

// owningPackage names the Debian package that installed the file at path, trying the
// other spellings merged /usr gives it (dpkg records /bin/ip, the PATH finds /usr/sbin/ip).
func owningPackage(path string) (string, error) {
	var tries []string
	for _, p := range []string{path, evalOr(path)} {
		tries = append(tries, p)
		if rest, ok := strings.CutPrefix(p, "/usr"); ok {
			tries = append(tries, rest)
		} else {
			tries = append(tries, "/usr"+p)
		}
	}
	for _, p := range tries {
		out, err := exec.Command("dpkg", "-S", p).Output()
		if err != nil {
			continue
		}
		line, _, _ := strings.Cut(string(out), "\n")
		if pkg, _, ok := strings.Cut(line, ": "); ok && !strings.Contains(pkg, ",") {
			pkg, _, _ = strings.Cut(pkg, ":") // libc6:amd64
			return pkg, nil
		}
	}
	return "", fmt.Errorf("dpkg -S finds no package for %s (tried %s)", path, strings.Join(tries, " "))
}

func evalOr(p string) string {
	if r, err := filepath.EvalSymlinks(p); err == nil {
		return r
	}
	return p
}
