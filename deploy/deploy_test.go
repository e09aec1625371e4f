// Package deploy holds the files that install discotrace (a systemd unit, a container
// recipe, a Grafana dashboard); its tests check them against the tools that read them.
package deploy

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const unitPath = "discotrace.service"

// systemd-analyze verify accepts the unit without a word: it exits 0 even on unknown
// keys and unparsable values (it only warns), so any output fails the test.
func TestServiceUnitVerifies(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Fatal("systemd-analyze is not installed: install Debian's systemd package to check the unit")
	}
	unit, err := filepath.Abs(unitPath)
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", "--man=no", unit).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify %s: %v\n%s", unitPath, err, out)
	}
}

// The unit's directives that the service's safety rests on.
func TestServiceUnitConfinesTheTracer(t *testing.T) {
	u := unitDirectives(t)
	for key, want := range map[string]string{
		"NoNewPrivileges":          "yes",
		"ProtectSystem":            "strict",
		"DynamicUser":              "yes",
		"StateDirectory":           "discotrace",
		"UMask":                    "0077",
		"Restart":                  "on-failure",
		"LimitMEMLOCK":             "infinity",
		"RestartPreventExitStatus": "2",
	} {
		if got := u[key]; got != want {
			t.Errorf("%s=%q, want %q", key, got, want)
		}
	}
	if u["AmbientCapabilities"] != u["CapabilityBoundingSet"] {
		t.Errorf("AmbientCapabilities=%q and CapabilityBoundingSet=%q differ: the service would hold capabilities it does not use, or lack some it is given",
			u["AmbientCapabilities"], u["CapabilityBoundingSet"])
	}
	exec := u["ExecStart"]
	if !strings.Contains(exec, "--metrics-addr 127.0.0.1:") || !strings.Contains(exec, `"$$STATE_DIRECTORY/events.ndjson"`) {
		t.Errorf("ExecStart=%s: want metrics on 127.0.0.1 and the events in the state directory", exec)
	}
	// These would hide /proc/kallsyms (drop locations) or the host's loopback (metrics).
	for _, key := range []string{"ProtectKernelTunables", "ProcSubset", "PrivateNetwork"} {
		if v, ok := u[key]; ok {
			t.Errorf("%s=%s: the tracer needs what it hides", key, v)
		}
	}
}

// unitDirectives reads the unit's Key=Value lines (a key given twice keeps the last).
func unitDirectives(t *testing.T) map[string]string {
	t.Helper()
	f, err := os.Open(unitPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	u := map[string]string{}
	s := bufio.NewScanner(f)
	for s.Scan() {
		line := strings.TrimSpace(s.Text())
		if line == "" || line[0] == '#' || line[0] == '[' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("%s: line %q is not Key=Value", unitPath, line)
		}
		u[k] = v
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	return u
}

// The unit's capabilities are all the tracer needs: as an unprivileged user holding only
// them (what DynamicUser= and AmbientCapabilities= give), `discotrace doctor` opens the
// tracer and every check that depends on privileges passes, /proc/kallsyms included.
func TestServiceCapabilitiesAreEnough(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to drop to an unprivileged user with capabilities: run `sudo go test ./deploy/`")
	}
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Fatal("setpriv is not installed: install Debian's util-linux package")
	}
	var caps []string
	for _, c := range strings.Fields(unitDirectives(t)["AmbientCapabilities"]) {
		caps = append(caps, "+"+strings.ToLower(strings.TrimPrefix(c, "CAP_")))
	}
	set := "-all," + strings.Join(caps, ",")

	dir, err := os.MkdirTemp("", "discotrace-deploy-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil { // the unprivileged user runs the binary
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "discotrace")
	build := exec.Command("go", "build", "-o", bin, "../cmd/discotrace")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cmd := exec.Command(setpriv, "--reuid=65534", "--regid=65534", "--clear-groups",
		"--inh-caps="+set, "--ambient-caps="+set, "--bounding-set="+set, bin, "doctor")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("discotrace doctor as nobody with %s: %v\n%s", set, err, out)
	}
	for _, want := range []string{"privileges ok", "kallsyms   ok", "tracer opened"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("discotrace doctor as nobody with %s does not say %q:\n%s", set, want, out)
		}
	}
}
