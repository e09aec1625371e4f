package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// cachedKernels returns the kernels a previous vmtest run left in the repository's cache;
// the module tests need real module files and skip without them.
func cachedKernels(t *testing.T) []*kernel {
	t.Helper()
	dirs, _ := filepath.Glob(filepath.Join("..", "..", ".vmtest-cache", "kernels", "*"))
	var ks []*kernel
	for _, d := range dirs {
		if k, err := loadCachedKernel(d); err == nil {
			ks = append(ks, k)
		}
	}
	if len(ks) == 0 {
		t.Skip("no kernel in .vmtest-cache/kernels: run `make vmtest-probe` once to fetch them")
	}
	return ks
}

func TestModuleFilesPutDependenciesFirst(t *testing.T) {
	for _, k := range cachedKernels(t) {
		files, err := k.moduleFiles([]string{"nf_tables", "veth", "nf_tables"})
		if err != nil {
			t.Fatalf("%s: %v", k.Release, err)
		}
		var names []string
		for _, f := range files {
			base := filepath.Base(f)
			names = append(names, base[:strings.Index(base, ".ko")])
		}
		pos := map[string]int{}
		for i, n := range names {
			if _, dup := pos[n]; dup {
				t.Errorf("%s: %s listed twice in %v", k.Release, n, names)
			}
			pos[n] = i
		}
		// nf_tables needs nfnetlink (modinfo depends=); veth needs nothing.
		if pos["nfnetlink"] >= pos["nf_tables"] {
			t.Errorf("%s: nfnetlink must come before nf_tables: %v", k.Release, names)
		}
		if names[len(names)-1] != "veth" {
			t.Errorf("%s: veth, asked for last and depending on nothing, should come last: %v", k.Release, names)
		}
		t.Logf("%s: %v", k.Release, names)
	}
}

func TestModuleFilesNamesTheMissingModule(t *testing.T) {
	for _, k := range cachedKernels(t) {
		_, err := k.moduleFiles([]string{"no_such_module"})
		if err == nil || !strings.Contains(err.Error(), "no module no_such_module") {
			t.Errorf("%s: error %v, want one naming no_such_module", k.Release, err)
		}
		// Built-in code is not an error: it needs no loading.
		b, err := os.ReadFile(filepath.Join(k.modulesDir(), "modules.builtin"))
		if err != nil {
			t.Fatal(err)
		}
		first := strings.Fields(string(b))[0]
		name := strings.TrimSuffix(filepath.Base(first), ".ko")
		if files, err := k.moduleFiles([]string{name}); err != nil || len(files) != 0 {
			t.Errorf("%s: built-in %s gave %v, %v; want nothing to load", k.Release, name, files, err)
		}
	}
}

func TestParseArgs(t *testing.T) {
	cfg, err := parseArgs([]string{"KERNEL=6.1,6.12", "BACKEND=fentry kprobe", "ENV=A=b", "TIMEOUT=90s", "SMP=1", "--", "./tracer", "-test.v", "--", "x"})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(cfg.kernels, "|") != "6.1|6.12" || strings.Join(cfg.backends, "|") != "fentry|kprobe" {
		t.Errorf("kernels %v backends %v", cfg.kernels, cfg.backends)
	}
	if cfg.vm.Timeout.String() != "1m30s" || cfg.vm.CPUs != 1 || cfg.env[0] != "A=b" {
		t.Errorf("timeout %v cpus %d env %v", cfg.vm.Timeout, cfg.vm.CPUs, cfg.env)
	}
	if cfg.target != "./tracer" || strings.Join(cfg.args, " ") != "-test.v -- x" {
		t.Errorf("target %q args %q", cfg.target, cfg.args)
	}
	for _, bad := range [][]string{
		{"KERNEL=6.1"},                     // no target
		{"KERNEL=6.1", "--"},               // no target
		{"NOPE=1", "--", "./tracer"},       // unknown key
		{"6.1", "--", "./tracer"},          // not KEY=VALUE
		{"TIMEOUT=soon", "--", "./x"},      // bad duration
		{"ENV=novalue", "--", "./tracer"},  // ENV without =
		{"ARCH=riscv64", "--", "./tracer"}, // no such guest
	} {
		if _, err := parseArgs(bad); err == nil {
			t.Errorf("parseArgs(%q) accepted bad input", bad)
		}
	}
}

func TestParseArgsArch(t *testing.T) {
	cfg, err := parseArgs([]string{"ARCH=arm64", "MIRROR=http://m/debian", "SECURITY_MIRROR=http://m/debian-security", "--", "./tracer"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.arch.Name != "arm64" || cfg.vm.Arch != cfg.arch || cfg.arch.Qemu != "qemu-system-aarch64" {
		t.Errorf("ARCH=arm64 gave %+v", cfg.arch)
	}
	if cfg.mirrors != (debianMirrors{Archive: "http://m/debian", Security: "http://m/debian-security"}) {
		t.Errorf("mirrors %+v", cfg.mirrors)
	}
	if got := (kernelSpec{Name: "6.1", Pattern: "linux-image-6.1.0-*-cloud-$ARCH-unsigned"}).forArch("arm64").Pattern; got != "linux-image-6.1.0-*-cloud-arm64-unsigned" {
		t.Errorf("forArch: %s", got)
	}
	if got := (runSpec{kernel: "6.12", arch: "arm64", backend: "kprobe"}).String(); got != "6.12-arm64/kprobe" {
		t.Errorf("run name %s", got)
	}
}

func TestWithTestTimeout(t *testing.T) {
	cases := []struct {
		bin     string
		args    []string
		timeout string
		want    string
	}{
		{"tracer.test", []string{"-test.v"}, "20m", "-test.timeout=18m0s -test.v"},
		{"tracer.test", nil, "2m", "-test.timeout=1m30s"},
		{"tracer.test", []string{"-test.timeout=5m"}, "20m", "-test.timeout=5m"},
		{"tracer.test", []string{"--test.timeout", "5m"}, "20m", "--test.timeout 5m"},
		{"tracer.test", nil, "20s", ""},
		{"probe", []string{"-require", "fentry"}, "20m", "-require fentry"},
	}
	for _, c := range cases {
		d, _ := time.ParseDuration(c.timeout)
		if got := strings.Join(withTestTimeout(c.bin, c.args, d), " "); got != c.want {
			t.Errorf("withTestTimeout(%s, %q, %s) = %q, want %q", c.bin, c.args, c.timeout, got, c.want)
		}
	}
}
