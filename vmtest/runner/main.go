// Command runner boots test binaries on stock Debian kernels under qemu (TCG) and reports
// their exit status; vmtest/run.sh builds and calls it. Usage:
//
//	vmtest/run.sh [KEY=VALUE ...] -- TARGET [ARGS ...]
//
// TARGET is a Go package directory (built with `go test -c`, or `go build` for a command
// without tests; CGO_ENABLED=0) or a static binary. Keys:
//
//	KERNEL=6.1,6.12   names from vmtest/kernels.conf, full package names, or "host"
//	                  (default: every kernel in kernels.conf)
//	ARCH=arm64        the guest's architecture, amd64 or arm64 (default: this machine's)
//	BACKEND="a b"     run each kernel once per value, with BACKEND_ENV=value in the guest
//	BACKEND_ENV=NAME  the variable BACKEND sets (default DISCOTRACE_TEST_BACKEND)
//	ENV=K=V           extra environment for the job (repeatable)
//	DIR=path          package directory of a prebuilt binary (its working directory and
//	                  testdata); a package TARGET sets it itself
//	TIMEOUT=20m       per run, boot included
//	MEM=1G SMP=2      guest memory and vCPUs
//	MODULES=veth      kernel modules to load in the guest (dependencies are added)
//	TOOLS=ip          host programs to copy into the guest with their libraries
//	APPEND=...        extra kernel command line
//	CACHE=.vmtest-cache
//	MIRROR=URL SECURITY_MIRROR=URL
//	                  the Debian mirrors vmtest's own apt configuration fetches kernels
//	                  from (default: the machine's, as its apt sources name them)
//
// It exits 0 when every run's job exited 0, 1 when any failed, 2 on a usage error.
package main

import (
	"context"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/discotrace/discotrace/vmtest/internal/job"
	"golang.org/x/sys/unix"
)

type config struct {
	root       string // repository root: vmtest/ lives here
	kernels    []string
	backends   []string
	backendEnv string
	env        []string
	dir        string
	timeout    time.Duration
	vm         vmOptions
	modules    []string
	tools      []string
	cacheDir   string
	arch       *guestArch
	mirrors    debianMirrors
	target     string
	args       []string
}

func main() {
	cfg, err := parseArgs(os.Args[1:])
	if err != nil {
		fmt.Fprintf(os.Stderr, "vmtest: %v\nusage: vmtest/run.sh [KERNEL=6.1,6.12|host] [KEY=VALUE ...] -- ./pkg-or-static-binary [test args]\n", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ok, err := run(ctx, cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "vmtest: %v\n", err)
		os.Exit(1)
	}
	if !ok {
		os.Exit(1)
	}
}

func splitList(v string) []string {
	return strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' })
}

func parseArgs(argv []string) (*config, error) {
	cfg := &config{
		root:       os.Getenv("VMTEST_ROOT"),
		backendEnv: "DISCOTRACE_TEST_BACKEND",
		timeout:    20 * time.Minute,
		vm:         vmOptions{Memory: "1G", CPUs: 2},
		modules:    []string{"veth"},
		tools:      []string{"ip"},
		cacheDir:   ".vmtest-cache",
	}
	if cfg.root == "" {
		cfg.root = "."
	}
	archName := ""
	i := 0
	for ; i < len(argv) && argv[i] != "--"; i++ {
		key, value, ok := strings.Cut(argv[i], "=")
		if !ok {
			return nil, fmt.Errorf("%q: settings are KEY=VALUE and come before `--`", argv[i])
		}
		switch key {
		case "KERNEL":
			cfg.kernels = splitList(value)
		case "BACKEND":
			cfg.backends = splitList(value)
		case "BACKEND_ENV":
			cfg.backendEnv = value
		case "ENV":
			if !strings.Contains(value, "=") {
				return nil, fmt.Errorf("ENV=%s: want ENV=NAME=VALUE", value)
			}
			cfg.env = append(cfg.env, value)
		case "DIR":
			cfg.dir = value
		case "TIMEOUT":
			d, err := time.ParseDuration(value)
			if err != nil || d <= 0 {
				return nil, fmt.Errorf("TIMEOUT=%s: want a duration like 20m", value)
			}
			cfg.timeout = d
		case "MEM":
			cfg.vm.Memory = value
		case "SMP":
			n, err := strconv.Atoi(value)
			if err != nil || n < 1 {
				return nil, fmt.Errorf("SMP=%s: want a number of vCPUs", value)
			}
			cfg.vm.CPUs = n
		case "MODULES":
			cfg.modules = splitList(value)
		case "TOOLS":
			cfg.tools = splitList(value)
		case "APPEND":
			cfg.vm.Append = value
		case "CACHE":
			cfg.cacheDir = value
		case "ARCH":
			archName = value
		case "MIRROR":
			cfg.mirrors.Archive = value
		case "SECURITY_MIRROR":
			cfg.mirrors.Security = value
		default:
			return nil, fmt.Errorf("unknown setting %s (known: KERNEL ARCH BACKEND BACKEND_ENV ENV DIR TIMEOUT MEM SMP MODULES TOOLS APPEND CACHE MIRROR SECURITY_MIRROR)", key)
		}
	}
	arch, err := lookupArch(archName)
	if err != nil {
		return nil, err
	}
	cfg.arch, cfg.vm.Arch = arch, arch
	if i >= len(argv)-1 {
		return nil, errors.New("no target: name a package directory or a static test binary after `--`")
	}
	cfg.target = argv[i+1]
	cfg.args = argv[i+2:]
	cfg.vm.Timeout = cfg.timeout
	return cfg, nil
}

// runSpec is one cell of the matrix.
type runSpec struct {
	kernel  string
	arch    string // "" for amd64, which names have always meant
	backend string
}

func (r runSpec) String() string {
	name := r.kernel
	if r.arch != "" {
		name += "-" + r.arch
	}
	if r.backend == "" {
		return name
	}
	return name + "/" + r.backend
}

func run(ctx context.Context, cfg *config) (bool, error) {
	specs, err := readKernelsConf(filepath.Join(cfg.root, "vmtest", "kernels.conf"))
	if err != nil {
		return false, err
	}
	if len(cfg.kernels) == 0 {
		for _, s := range specs {
			cfg.kernels = append(cfg.kernels, s.Name)
		}
	}
	needVM := false
	for _, k := range cfg.kernels {
		needVM = needVM || k != "host"
		if k == "host" && !cfg.arch.native() {
			return false, fmt.Errorf("KERNEL=host with ARCH=%s: this machine is %s", cfg.arch.Name, runtime.GOARCH)
		}
	}
	if needVM {
		if err := cfg.arch.checkQemu(); err != nil {
			return false, err
		}
	}
	cacheDir, err := filepath.Abs(cfg.cacheDir)
	if err != nil {
		return false, err
	}
	// Each invocation builds in a directory of its own, so parallel runs (say the probe
	// and the tracer's tests) do not overwrite each other's archives.
	if err := os.MkdirAll(filepath.Join(cacheDir, "build"), 0o755); err != nil {
		return false, err
	}
	buildDir, err := os.MkdirTemp(filepath.Join(cacheDir, "build"), "run-")
	if err != nil {
		return false, err
	}
	defer os.RemoveAll(buildDir)

	testBin, hostDir, guestDir, err := prepareTarget(cfg, buildDir)
	if err != nil {
		return false, err
	}
	cfg.args = withTestTimeout(testBin, cfg.args, cfg.timeout)

	src := kernelSource{
		CacheDir: cacheDir,
		Arch:     cfg.arch,
		Template: filepath.Join(cfg.root, "vmtest", "apt-sources.list"),
		Mirrors:  cfg.mirrors,
	}
	var base, tools, payload string
	if needVM {
		if base, err = buildBaseArchive(cfg.root, buildDir, cfg.arch); err != nil {
			return false, err
		}
		if tools, err = buildArchive(filepath.Join(buildDir, "tools.cpio"), func(c *cpioWriter) error {
			if cfg.arch.native() {
				return addHostTools(c, cfg.tools)
			}
			return addDebianTools(c, cfg.tools, src)
		}); err != nil {
			return false, err
		}
		if payload, err = buildArchive(filepath.Join(buildDir, "payload.cpio"), func(c *cpioWriter) error {
			c.File(guestBinary(testBin), testBin, 0o755)
			return addTestdata(c, hostDir, guestDir)
		}); err != nil {
			return false, err
		}
	}

	var runs []runSpec
	archLabel := ""
	if cfg.arch.Name != "amd64" {
		archLabel = cfg.arch.Name
	}
	for _, k := range cfg.kernels {
		if len(cfg.backends) == 0 {
			runs = append(runs, runSpec{kernel: k, arch: archLabel})
		}
		for _, b := range cfg.backends {
			runs = append(runs, runSpec{kernel: k, arch: archLabel, backend: b})
		}
	}

	type outcome struct {
		spec    runSpec
		what    string
		res     runResult
		logFile string
	}
	var outcomes []outcome
	for _, r := range runs {
		if ctx.Err() != nil {
			break
		}
		env := append([]string{}, cfg.env...)
		if r.backend != "" {
			env = append(env, cfg.backendEnv+"="+r.backend)
		}
		fmt.Fprintf(os.Stderr, "=== vmtest %s: %s %s\n", r, cfg.target, strings.Join(cfg.args, " "))
		if r.kernel == "host" {
			var uts unix.Utsname
			_ = unix.Uname(&uts)
			res := runOnHost(ctx, append([]string{testBin}, cfg.args...), hostDir, env, cfg.timeout)
			outcomes = append(outcomes, outcome{spec: r, what: "host " + unix.ByteSliceToString(uts.Release[:]), res: res})
			continue
		}
		spec, err := findSpec(specs, r.kernel)
		if err != nil {
			return false, err
		}
		k, err := resolveKernel(spec.forArch(cfg.arch.Name), src)
		if err != nil {
			return false, err
		}
		modules, err := k.moduleFiles(cfg.modules)
		if err != nil {
			return false, err
		}
		j := job.Job{
			Args: append([]string{guestBinary(testBin)}, cfg.args...),
			Env:  env,
			Dir:  guestDir,
		}
		initrd := filepath.Join(buildDir, "initrd-"+strings.ReplaceAll(r.String(), "/", "-")+".img")
		jobArchive := filepath.Join(buildDir, "job.cpio")
		if _, err := buildArchive(jobArchive, func(c *cpioWriter) error {
			for _, m := range modules {
				guest := "/vmtest/modules/" + filepath.Base(m)
				c.File(guest, m, 0o644)
				j.Modules = append(j.Modules, guest)
			}
			b, err := json.Marshal(j)
			if err != nil {
				return err
			}
			c.Bytes(job.Path, 0o644, b)
			return nil
		}); err != nil {
			return false, err
		}
		if err := concatFiles(initrd, base, tools, payload, jobArchive); err != nil {
			return false, err
		}
		logDir := filepath.Join(cacheDir, "logs")
		if err := os.MkdirAll(logDir, 0o755); err != nil {
			return false, err
		}
		logFile := filepath.Join(logDir, strings.ReplaceAll(r.String(), "/", "-")+".log")
		lf, err := os.Create(logFile)
		if err != nil {
			return false, err
		}
		fmt.Fprintf(os.Stderr, "=== vmtest %s: booting %s %s (%s) in %s under TCG, timeout %s; console log %s\n",
			r, k.Package, k.Version, k.Release, cfg.arch.Qemu, cfg.timeout, logFile)
		res := bootVM(ctx, k.vmlinuz(), initrd, cfg.vm, "["+r.String()+"] ", os.Stdout, lf)
		if res.DiedBooting {
			// The job never started, so a second boot cannot hide a failure of ours; a
			// second early death is reported as it is.
			fmt.Fprintf(os.Stderr, "=== vmtest %s: the kernel died before /init started (%v); booting once more\n", r, res.Err)
			fmt.Fprintf(lf, "\n=== second boot: the first died before /init started\n")
			first := res.Wall
			res = bootVM(ctx, k.vmlinuz(), initrd, cfg.vm, "["+r.String()+"] ", os.Stdout, lf)
			res.Wall += first
			res.Rebooted = true
		}
		lf.Close()
		os.Remove(initrd)
		outcomes = append(outcomes, outcome{spec: r, what: k.Package + " " + k.Version, res: res, logFile: logFile})
	}

	allOK := len(outcomes) == len(runs)
	fmt.Fprintf(os.Stderr, "\n=== vmtest summary: %s %s\n", cfg.target, strings.Join(cfg.args, " "))
	for _, o := range outcomes {
		verdict := "PASS"
		switch {
		case o.res.Err != nil:
			verdict = "ERROR: " + o.res.Err.Error()
		case o.res.Status != 0:
			verdict = fmt.Sprintf("FAIL (exit status %d)", o.res.Status)
		}
		if verdict != "PASS" {
			allOK = false
		}
		boot := "-"
		if o.res.BootTime > 0 {
			boot = fmt.Sprintf("boot %.1fs (guest uptime %.2fs)", o.res.BootTime.Seconds(), o.res.Uptime)
		}
		if o.res.Rebooted {
			verdict += " (second boot: the first died before /init)"
		}
		fmt.Fprintf(os.Stderr, "%-22s %-58s %-32s total %-8s %s\n", o.spec, o.what, boot, o.res.Wall.Round(100*time.Millisecond), verdict)
	}
	if len(outcomes) < len(runs) {
		fmt.Fprintf(os.Stderr, "interrupted: %d of %d runs not done\n", len(runs)-len(outcomes), len(runs))
	}
	return allOK, nil
}

func findSpec(specs []kernelSpec, name string) (kernelSpec, error) {
	for _, s := range specs {
		if s.Name == name {
			return s, nil
		}
	}
	if strings.HasPrefix(name, "linux-image-") {
		return kernelSpec{Name: name, Pattern: name}, nil
	}
	var names []string
	for _, s := range specs {
		names = append(names, s.Name)
	}
	return kernelSpec{}, fmt.Errorf("KERNEL=%s: not in vmtest/kernels.conf (%s), not \"host\", and not a package name (linux-image-...)", name, strings.Join(names, ", "))
}

// guestBinary is where the test binary lives in the guest.
func guestBinary(hostPath string) string { return "/vmtest/bin/" + filepath.Base(hostPath) }

// prepareTarget builds the target if it is a package and checks that the binary is static.
// It returns the binary, the package directory on the host (working directory and testdata,
// "" if unknown) and the matching working directory in the guest.
func prepareTarget(cfg *config, buildDir string) (bin, hostDir, guestDir string, err error) {
	st, err := os.Stat(cfg.target)
	if err != nil {
		return "", "", "", fmt.Errorf("target %s: %w", cfg.target, err)
	}
	if st.IsDir() {
		hostDir, err = filepath.Abs(cfg.target)
		if err != nil {
			return "", "", "", err
		}
		// A command without tests (such as vmtest/probe) is built as itself, anything
		// else as its test binary.
		list := exec.Command("go", "list", "-f", "{{.Name}} {{len .TestGoFiles}} {{len .XTestGoFiles}}", ".")
		list.Dir = hostDir
		list.Stderr = os.Stderr
		out, err := list.Output()
		if err != nil {
			return "", "", "", fmt.Errorf("go list %s: %w", cfg.target, err)
		}
		build := []string{"test", "-c"}
		bin = filepath.Join(buildDir, filepath.Base(hostDir)+".test")
		if strings.TrimSpace(string(out)) == "main 0 0" {
			build = []string{"build"}
			bin = filepath.Join(buildDir, filepath.Base(hostDir))
		}
		fmt.Fprintf(os.Stderr, "=== vmtest: go %s %s (CGO_ENABLED=0 GOARCH=%s)\n", strings.Join(build, " "), cfg.target, cfg.arch.Name)
		os.Remove(bin)
		cmd := exec.Command("go", append(build, "-o", bin, ".")...)
		cmd.Dir = hostDir
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+cfg.arch.Name)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return "", "", "", fmt.Errorf("go %s %s: %w", strings.Join(build, " "), cfg.target, err)
		}
		if _, err := os.Stat(bin); err != nil {
			return "", "", "", fmt.Errorf("%s has no tests: go test -c wrote no binary", cfg.target)
		}
	} else {
		if bin, err = filepath.Abs(cfg.target); err != nil {
			return "", "", "", err
		}
		if cfg.dir != "" {
			if hostDir, err = filepath.Abs(cfg.dir); err != nil {
				return "", "", "", err
			}
		}
	}
	if err := checkStatic(bin, cfg.arch); err != nil {
		return "", "", "", err
	}
	guestDir = "/"
	if hostDir != "" {
		root, err := filepath.Abs(cfg.root)
		if err != nil {
			return "", "", "", err
		}
		rel, err := filepath.Rel(root, hostDir)
		if err != nil || strings.HasPrefix(rel, "..") {
			rel = filepath.Base(hostDir)
		}
		guestDir = filepath.ToSlash(filepath.Join("/src", rel))
	}
	return bin, hostDir, guestDir, nil
}

// withTestTimeout gives a Go test binary a -test.timeout shorter than the run's TIMEOUT
// (unless the arguments set one), so a hung test ends with the testing package's goroutine
// dump on the console instead of a silent kill of the VM.
func withTestTimeout(bin string, args []string, timeout time.Duration) []string {
	if !strings.HasSuffix(bin, ".test") {
		return args
	}
	for _, a := range args {
		if strings.HasPrefix(strings.TrimLeft(a, "-"), "test.timeout") {
			return args
		}
	}
	// The boot and the guest's setup take seconds; leave the testing package a margin.
	inner := timeout - timeout/10
	if timeout-inner < 30*time.Second {
		inner = timeout - 30*time.Second
	}
	if inner <= 0 {
		return args
	}
	return append([]string{"-test.timeout=" + inner.String()}, args...)
}

// checkStatic refuses dynamically linked binaries: the guest has no libc for them.
func checkStatic(bin string, arch *guestArch) error {
	f, err := elf.Open(bin)
	if err != nil {
		return fmt.Errorf("%s: not an ELF binary: %w", bin, err)
	}
	defer f.Close()
	if f.Machine != arch.ELF {
		return fmt.Errorf("%s is built for %s; the guest is %s (build it with GOARCH=%s, or set ARCH=)", bin, f.Machine, arch.ELF, arch.Name)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked; the guest has no libc: build it with CGO_ENABLED=0", bin)
		}
	}
	return nil
}

// addTestdata copies the package's testdata directory so tests find their files at the
// same relative paths as on the host.
func addTestdata(c *cpioWriter, hostDir, guestDir string) error {
	if hostDir == "" {
		return nil
	}
	c.Dir(guestDir)
	src := filepath.Join(hostDir, "testdata")
	if _, err := os.Stat(src); err != nil {
		return nil
	}
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(hostDir, p)
		guest := filepath.ToSlash(filepath.Join(guestDir, rel))
		switch {
		case d.IsDir():
			c.Dir(guest)
		case d.Type().IsRegular():
			c.File(guest, p, 0o644)
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			c.Symlink(guest, target)
		}
		return nil
	})
}

// buildBaseArchive builds the fixed part of every initramfs: the static /init, the console
// node the kernel opens for it, and /etc/hosts.
func buildBaseArchive(root, buildDir string, arch *guestArch) (string, error) {
	initBin := filepath.Join(buildDir, "init")
	cmd := exec.Command("go", "build", "-trimpath", "-o", initBin, "./vmtest/init")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch.Name)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("building vmtest/init: %w", err)
	}
	return buildArchive(filepath.Join(buildDir, "base.cpio"), func(c *cpioWriter) error {
		c.CharDev("/dev/console", 0o600, 5, 1)
		c.File("/init", initBin, 0o755)
		// Go's resolver reads /etc/hosts: without it "localhost" would go to DNS,
		// which the guest has none of.
		c.Bytes("/etc/hosts", 0o644, []byte("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"))
		return nil
	})
}

func buildArchive(file string, fill func(*cpioWriter) error) (string, error) {
	f, err := os.Create(file)
	if err != nil {
		return "", err
	}
	c := newCPIOWriter(f)
	err = fill(c)
	if cerr := c.Close(); err == nil {
		err = cerr
	}
	if ferr := f.Close(); err == nil {
		err = ferr
	}
	if err != nil {
		os.Remove(file)
		return "", fmt.Errorf("building %s: %w", filepath.Base(file), err)
	}
	return file, nil
}

func concatFiles(dst string, parts ...string) error {
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	for _, p := range parts {
		in, err := os.Open(p)
		if err != nil {
			out.Close()
			return err
		}
		_, err = io.Copy(out, in)
		in.Close()
		if err != nil {
			out.Close()
			return err
		}
	}
	return out.Close()
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "vmtest: "+format+"\n", args...)
}
