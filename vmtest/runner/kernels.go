package main

import (
	"bufio"
	"bytes"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// kernelSpec is one line of vmtest/kernels.conf.
type kernelSpec struct {
	Name    string // what KERNEL= takes, e.g. "6.1"
	Pattern string // Debian package name glob
}

// forArch fills in the architecture where the glob says $ARCH.
func (s kernelSpec) forArch(arch string) kernelSpec {
	s.Pattern = strings.ReplaceAll(s.Pattern, "$ARCH", arch)
	return s
}

func readKernelsConf(file string) ([]kernelSpec, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var specs []kernelSpec
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) != 2 {
			return nil, fmt.Errorf("%s:%d: want `NAME PACKAGE-GLOB`, got %q", file, n, line)
		}
		if _, err := path.Match(fields[1], ""); err != nil {
			return nil, fmt.Errorf("%s:%d: bad package glob %q: %v", file, n, fields[1], err)
		}
		specs = append(specs, kernelSpec{Name: fields[0], Pattern: fields[1]})
	}
	return specs, sc.Err()
}

// kernel is an unpacked Debian kernel package in the cache.
type kernel struct {
	Package string `json:"package"`
	Version string `json:"version"`
	Release string `json:"release"` // uname -r, e.g. 6.1.0-56-cloud-amd64
	dir     string
}

func (k *kernel) vmlinuz() string    { return filepath.Join(k.dir, "boot", "vmlinuz-"+k.Release) }
func (k *kernel) modulesDir() string { return filepath.Join(k.dir, "lib", "modules", k.Release) }

// aptConfig runs apt with either the machine's configuration or the harness's private one.
type aptConfig struct {
	name string   // for messages
	opts []string // -o options
	base string   // the private configuration's directory; "" for the machine's
}

var systemApt = aptConfig{name: "the machine's apt sources"}

// kernelSource says where kernels come from: the cache, and the harness's private apt
// configuration for arch, whose sources list is the template vmtest/apt-sources.list with
// the machine's Debian mirrors (or Mirrors, when set) filled in.
type kernelSource struct {
	CacheDir string
	Arch     *guestArch
	Template string        // vmtest/apt-sources.list
	Mirrors  debianMirrors // MIRROR= and SECURITY_MIRROR=; empty fields come from the machine
}

// privateApt is an apt configuration of the harness's own, for one architecture: its
// sources list, lists and archive cache under the vmtest cache (apt-<arch>). It never
// touches the machine's apt state.
func (src kernelSource) privateApt() (aptConfig, error) {
	base := filepath.Join(src.CacheDir, "apt-"+src.Arch.Name)
	sourcesList := filepath.Join(base, "sources.list")
	m := src.Mirrors
	if m.Archive == "" || m.Security == "" {
		found, err := machineMirrors()
		if err != nil {
			return aptConfig{}, err
		}
		if m.Archive == "" {
			m.Archive = found.Archive
		}
		if m.Security == "" {
			m.Security = found.Security
		}
	}
	if err := writeSourcesList(src.Template, sourcesList, m); err != nil {
		return aptConfig{}, err
	}
	return aptConfig{
		name: fmt.Sprintf("vmtest's own %s apt sources (%s from %s and %s)", src.Arch.Name, src.Template, m.Archive, m.Security),
		base: base,
		opts: []string{
			"-o", "Dir::Etc::SourceList=" + sourcesList,
			"-o", "Dir::Etc::SourceParts=" + filepath.Join(base, "sources.list.d"),
			"-o", "Dir::State::Lists=" + filepath.Join(base, "lists"),
			"-o", "Dir::Cache=" + filepath.Join(base, "cache"),
			"-o", "Dir::State::status=/dev/null",
			"-o", "Debug::NoLocking=true",
			"-o", "APT::Architecture=" + src.Arch.Name,
			"-o", "APT::Architectures=" + src.Arch.Name,
			// The appstream metadata some machines' apt fetches by default: not needed.
			"-o", "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false",
		},
	}, nil
}

func (a aptConfig) command(tool string, args ...string) *exec.Cmd {
	all := append([]string{}, a.opts...)
	if os.Geteuid() == 0 {
		// apt drops to _apt for downloads, which cannot write into a root-owned cache.
		all = append(all, "-o", "APT::Sandbox::User=root")
	}
	return exec.Command(tool, append(all, args...)...)
}

// privateListsMaxAge is how long the private apt lists are trusted before the next update.
const privateListsMaxAge = 12 * time.Hour

// update runs apt-get update for the private configuration, unless the last one succeeded
// less than privateListsMaxAge ago and after the sources list last changed. (The lists' own
// times are the mirror's, not the download's: the stamp file keeps the latter.)
func (a aptConfig) update() error {
	base := a.base
	stamp := filepath.Join(base, "updated")
	if src, err := os.Stat(filepath.Join(base, "sources.list")); err == nil {
		if st, err := os.Stat(stamp); err == nil && time.Since(st.ModTime()) < privateListsMaxAge && st.ModTime().After(src.ModTime()) {
			return nil
		}
	}
	for _, d := range []string{"sources.list.d", "lists/partial", "cache/archives/partial"} {
		if err := os.MkdirAll(filepath.Join(base, d), 0o755); err != nil {
			return err
		}
	}
	cmd := a.command("apt-get", "-q", "update")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("apt-get update with %s: %w", a.name, err)
	}
	return os.WriteFile(stamp, nil, 0o644)
}

type aptPackage struct{ Name, Version string }

// candidates lists the packages matching pattern that apt can download, with their candidate
// versions, newest first.
func (a aptConfig) candidates(pattern string) ([]aptPackage, error) {
	prefix := pattern
	if i := strings.IndexAny(prefix, "*?["); i >= 0 {
		prefix = prefix[:i]
	}
	out, err := a.command("apt-cache", "pkgnames", prefix).Output()
	if err != nil {
		return nil, fmt.Errorf("apt-cache pkgnames %s: %w", prefix, err)
	}
	var names []string
	for _, name := range strings.Fields(string(out)) {
		if ok, _ := path.Match(pattern, name); ok {
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		return nil, nil
	}
	// A name without a downloadable version makes apt-cache show complain and exit non-zero
	// while still printing the others: parse what it printed.
	out, _ = a.command("apt-cache", append([]string{"show", "--no-all-versions"}, names...)...).Output()
	var pkgs []aptPackage
	for _, para := range strings.Split(string(out), "\n\n") {
		var p aptPackage
		for _, line := range strings.Split(para, "\n") {
			if v, ok := strings.CutPrefix(line, "Package: "); ok {
				p.Name = strings.TrimSpace(v)
			}
			if v, ok := strings.CutPrefix(line, "Version: "); ok {
				p.Version = strings.TrimSpace(v)
			}
		}
		if p.Name != "" && p.Version != "" {
			pkgs = append(pkgs, p)
		}
	}
	sort.Slice(pkgs, func(i, j int) bool { return compareDebianVersions(pkgs[i].Version, pkgs[j].Version) > 0 })
	return pkgs, nil
}

// resolveKernel finds the newest package for spec, downloads and unpacks it into the cache
// unless it is there already, and returns it. Without any apt source offering the package it
// falls back to the newest cached one, so runs work offline once the cache is warm.
func resolveKernel(spec kernelSpec, src kernelSource) (*kernel, error) {
	cacheDir := src.CacheDir
	var pkgs []aptPackage
	var err error
	apt := systemApt
	// The machine's own lists hold its own architecture's packages only.
	if src.Arch.native() {
		pkgs, err = apt.candidates(spec.Pattern)
		if err != nil {
			return nil, fmt.Errorf("%v (is this a Debian system with apt?)", err)
		}
	}
	if len(pkgs) == 0 {
		if src.Arch.native() {
			logf("no %s in %s; trying vmtest's own apt configuration", spec.Pattern, systemApt.name)
		}
		if apt, err = src.privateApt(); err != nil {
			logf("%v", err)
		} else if err = apt.update(); err != nil {
			logf("%v", err)
		} else if pkgs, err = apt.candidates(spec.Pattern); err != nil {
			logf("%v", err)
		}
	}
	if len(pkgs) == 0 {
		if k := newestCachedKernel(cacheDir, spec.Pattern); k != nil {
			logf("kernel %s: no apt source offers %s now; using the cached %s %s", spec.Name, spec.Pattern, k.Package, k.Version)
			return k, nil
		}
		return nil, fmt.Errorf("kernel %s: no package matching %s in the machine's apt sources nor in vmtest's own (%s on the machine's Debian mirrors), and none cached in %s.\n"+
			"Debian ships the 6.1 cloud kernels in bookworm and bookworm-security, the 6.12 ones (+deb12) in bookworm-security and 5.10 in bullseye(-security): "+
			"check that the machine's Debian mirror is reachable (`apt-get update`), and the name with `apt-cache search cloud-%s-unsigned`",
			spec.Name, spec.Pattern, src.Template, filepath.Join(cacheDir, "kernels"), src.Arch.Name)
	}
	// Newest first; a mirror that lists a version but cannot serve it yet (404) falls back
	// to the next one, loudly.
	var errs []string
	for _, p := range pkgs {
		dir := filepath.Join(cacheDir, "kernels", p.Name+"_"+p.Version)
		if k, err := loadCachedKernel(dir); err == nil {
			return k, nil
		}
		logf("kernel %s: fetching %s %s from %s", spec.Name, p.Name, p.Version, apt.name)
		k, err := fetchKernel(apt, p, dir)
		if err == nil {
			return k, nil
		}
		logf("kernel %s: %v; trying the next older package", spec.Name, err)
		errs = append(errs, err.Error())
		if len(errs) == 8 {
			break
		}
	}
	return nil, fmt.Errorf("kernel %s: no package matching %s could be fetched:\n\t%s", spec.Name, spec.Pattern, strings.Join(errs, "\n\t"))
}

func loadCachedKernel(dir string) (*kernel, error) {
	b, err := os.ReadFile(filepath.Join(dir, "kernel.json"))
	if err != nil {
		return nil, err
	}
	k := &kernel{dir: dir}
	if err := json.Unmarshal(b, k); err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	if _, err := os.Stat(k.vmlinuz()); err != nil {
		return nil, err
	}
	return k, nil
}

func newestCachedKernel(cacheDir, pattern string) *kernel {
	entries, _ := os.ReadDir(filepath.Join(cacheDir, "kernels"))
	var best *kernel
	for _, e := range entries {
		k, err := loadCachedKernel(filepath.Join(cacheDir, "kernels", e.Name()))
		if err != nil {
			continue
		}
		if ok, _ := path.Match(pattern, k.Package); !ok {
			continue
		}
		if best == nil || compareDebianVersions(k.Version, best.Version) > 0 {
			best = k
		}
	}
	return best
}

// fetchKernel downloads one package with apt-get download and unpacks it with dpkg-deb into
// dir. It unpacks into a temporary directory and renames it at the end, so an interrupted
// fetch never leaves a half kernel that later runs would take for a cached one.
func fetchKernel(apt aptConfig, pkg aptPackage, dir string) (*kernel, error) {
	parent := filepath.Dir(dir)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp(parent, ".fetch-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)

	dl := apt.command("apt-get", "-q", "download", pkg.Name+"="+pkg.Version)
	dl.Dir = tmp
	dl.Stdout, dl.Stderr = os.Stderr, os.Stderr
	if err := dl.Run(); err != nil {
		return nil, fmt.Errorf("apt-get download %s=%s: %w", pkg.Name, pkg.Version, err)
	}
	debs, _ := filepath.Glob(filepath.Join(tmp, "*.deb"))
	if len(debs) != 1 {
		return nil, fmt.Errorf("apt-get download %s left %d .deb files, want 1", pkg.Name, len(debs))
	}
	root := filepath.Join(tmp, "root")
	if out, err := exec.Command("dpkg-deb", "-x", debs[0], root).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("dpkg-deb -x %s: %v: %s", debs[0], err, out)
	}
	vmlinuz, _ := filepath.Glob(filepath.Join(root, "boot", "vmlinuz-*"))
	if len(vmlinuz) != 1 {
		return nil, fmt.Errorf("%s holds %d boot/vmlinuz-* files, want 1: is it a kernel image package?", filepath.Base(debs[0]), len(vmlinuz))
	}
	k := &kernel{Package: pkg.Name, Version: pkg.Version, Release: strings.TrimPrefix(filepath.Base(vmlinuz[0]), "vmlinuz-")}
	// Documentation is the bulk of nothing we need.
	if err := os.RemoveAll(filepath.Join(root, "usr", "share")); err != nil {
		return nil, err
	}
	meta, _ := json.MarshalIndent(k, "", "  ")
	if err := os.WriteFile(filepath.Join(root, "kernel.json"), append(meta, '\n'), 0o644); err != nil {
		return nil, err
	}
	if err := os.Rename(root, dir); err != nil {
		// A parallel run may have finished the same fetch first.
		if cached, cerr := loadCachedKernel(dir); cerr == nil {
			return cached, nil
		}
		// Or an interrupted older layout is in the way: replace it.
		if err := os.RemoveAll(dir); err != nil {
			return nil, err
		}
		if err := os.Rename(root, dir); err != nil {
			return nil, err
		}
	}
	k.dir = dir
	return k, nil
}

// moduleFiles returns the module files to load for the named modules, dependencies first,
// read from each module's own depends= (the package ships no modules.dep: depmod runs at
// install time). Modules built into the kernel are skipped.
func (k *kernel) moduleFiles(names []string) ([]string, error) {
	if len(names) == 0 {
		return nil, nil
	}
	dir := k.modulesDir()
	index := map[string]string{}
	err := filepath.WalkDir(filepath.Join(dir, "kernel"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		base := d.Name()
		for _, ext := range []string{".ko", ".ko.xz", ".ko.zst", ".ko.gz"} {
			if name, ok := strings.CutSuffix(base, ext); ok {
				index[normalizeModuleName(name)] = p
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("kernel %s modules: %w", k.Release, err)
	}
	builtin := map[string]bool{}
	if b, err := os.ReadFile(filepath.Join(dir, "modules.builtin")); err == nil {
		for _, line := range strings.Fields(string(b)) {
			builtin[normalizeModuleName(strings.TrimSuffix(path.Base(line), ".ko"))] = true
		}
	}

	var order []string
	state := map[string]int{} // 1: visiting, 2: done
	var visit func(name, wantedBy string) error
	visit = func(name, wantedBy string) error {
		name = normalizeModuleName(name)
		switch state[name] {
		case 1:
			return fmt.Errorf("module dependency cycle at %s", name)
		case 2:
			return nil
		}
		file, ok := index[name]
		if !ok {
			if builtin[name] {
				state[name] = 2
				return nil
			}
			return fmt.Errorf("kernel %s has no module %s%s (neither a file under %s nor built in)", k.Release, name, wantedBy, dir)
		}
		state[name] = 1
		deps, err := moduleDepends(file)
		if err != nil {
			return err
		}
		for _, d := range deps {
			if err := visit(d, " (needed by "+name+")"); err != nil {
				return err
			}
		}
		state[name] = 2
		order = append(order, file)
		return nil
	}
	for _, n := range names {
		if err := visit(n, ""); err != nil {
			return nil, err
		}
	}
	return order, nil
}

func normalizeModuleName(name string) string { return strings.ReplaceAll(name, "-", "_") }

// moduleDepends reads the depends= entry of a module's .modinfo section.
func moduleDepends(file string) ([]string, error) {
	var data []byte
	var err error
	switch {
	case strings.HasSuffix(file, ".ko"):
		data, err = os.ReadFile(file)
	case strings.HasSuffix(file, ".xz"):
		data, err = exec.Command("xz", "-dc", file).Output()
	case strings.HasSuffix(file, ".zst"):
		data, err = exec.Command("zstd", "-dcq", file).Output()
	case strings.HasSuffix(file, ".gz"):
		data, err = exec.Command("gzip", "-dc", file).Output()
	}
	if err != nil {
		var exitErr *exec.ExitError
		if errors.As(err, &exitErr) || errors.Is(err, exec.ErrNotFound) {
			return nil, fmt.Errorf("decompressing %s: %v (install xz-utils / zstd)", file, err)
		}
		return nil, err
	}
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, fmt.Errorf("%s: no .modinfo section", file)
	}
	info, err := sec.Data()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	for _, entry := range bytes.Split(info, []byte{0}) {
		if v, ok := bytes.CutPrefix(entry, []byte("depends=")); ok {
			if len(v) == 0 {
				return nil, nil
			}
			return strings.Split(string(v), ","), nil
		}
	}
	return nil, nil
}
