package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/discotrace/discotrace/internal/leftovers"
	"github.com/discotrace/discotrace/internal/netlab"
	"github.com/discotrace/discotrace/ndjson"
)

// demoChildEnv, in a re-run of the test binary, names the test that runs discotrace
// there.
const demoChildEnv = "DISCOTRACE_TEST_DEMO_CHILD"

// asDiscotrace runs main with args when this process is the re-run of test; main exits.
func asDiscotrace(test string, args ...string) {
	if os.Getenv(demoChildEnv) == test {
		os.Args = append([]string{"discotrace"}, args...)
		main()
	}
}

// `discotrace demo` prints NDJSON only on stdout (not a terminal), in which every failure
// class the demo makes happen shows, and ends with the report on stderr, whose causes add
// up to the stream's.
func TestDemoCommand(t *testing.T) {
	netlab.RequireRoot(t)
	var stdout, stderr bytes.Buffer
	if err := runDemo(context.Background(), &stdout, &stderr, &demoFlags{}); err != nil {
		t.Fatalf("demo: %v\nstderr:\n%s", err, stderr.String())
	}
	requireSchemaValid(t, stdout.Bytes())
	causes := map[string]int{}
	causesOf := map[string]map[string]int{ndjson.TypeHandshake: {}, ndjson.TypeExchange: {}}
	var established, answered, rcvbuff int
	sc := bufio.NewScanner(&stdout)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var ev ndjson.Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("stdout line is not an event: %v: %s", err, sc.Text())
		}
		switch {
		case ev.Type == ndjson.TypeHandshake && ev.Outcome == "established" && ev.WhoareyouRTTNs != nil && ev.HandshakeRTTNs != nil:
			established++
		case ev.Type == ndjson.TypeExchange && ev.Outcome == "answered" && ev.RTTNs != nil:
			answered++
		case ev.Type == ndjson.TypeDrop && ev.Reason == "SOCKET_RCVBUFF":
			rcvbuff++
		}
		if ev.Outcome == "failed" {
			causes[ev.Cause]++
			causesOf[ev.Type][ev.Cause]++
		}
	}
	if established == 0 || answered == 0 || rcvbuff == 0 {
		t.Errorf("%d handshakes established, %d exchanges answered (with round trips), %d SOCKET_RCVBUFF drops: want some of each", established, answered, rcvbuff)
	}
	for _, c := range []string{"icmp_unreachable", "app_drop", "kernel_drop", "expired"} {
		if causes[c] == 0 {
			t.Errorf("no failure with cause %s in the stream; causes: %v", c, causes)
		}
	}
	for typ, prefix := range map[string]string{ndjson.TypeHandshake: "handshakes ", ndjson.TypeExchange: "exchanges "} {
		line := summaryLine(stderr.String(), prefix)
		for c, n := range causesOf[typ] {
			if !regexp.MustCompile(fmt.Sprintf(`[:,] %d %s\b`, n, c)).MatchString(line) {
				t.Errorf("report line %q does not count %d %s %ss, as the stream does", line, n, c, typ)
			}
		}
	}
	if ns, _ := netlab.NamespacesOf(os.Getpid()); len(ns) > 0 {
		t.Errorf("namespaces left behind: %v", ns)
	}
}

// summaryLine returns the line of text that starts with prefix.
func summaryLine(text, prefix string) string {
	for line := range strings.SplitSeq(text, "\n") {
		if strings.HasPrefix(line, prefix) {
			return line
		}
	}
	return ""
}

// Ctrl-C in the terminal (SIGINT to the foreground process group) in the middle of the
// demo: it says it was interrupted, exits 1 and leaves no namespace, process or BPF
// program behind.
func TestDemoCtrlCRemovesEverything(t *testing.T) {
	asDiscotrace(t.Name(), "demo")
	netlab.RequireRoot(t)
	cmd := exec.Command(os.Args[0], "-test.run=^"+t.Name()+"$")
	cmd.Env = append(os.Environ(), demoChildEnv+"="+t.Name())
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // a job of its own, as a shell starts one
	stderrPipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	var stderr bytes.Buffer
	sc := bufio.NewScanner(stderrPipe)
	for sc.Scan() {
		stderr.WriteString(sc.Text() + "\n")
		if strings.Contains(sc.Text(), "a peer that is down") {
			break
		}
	}
	programs := leftovers.HeldPrograms(pid)
	if err := syscall.Kill(-pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	for sc.Scan() {
		stderr.WriteString(sc.Text() + "\n")
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Errorf("interrupted demo: %v, want exit status 1; stderr:\n%s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "discotrace: demo interrupted") {
		t.Errorf("stderr does not say the demo was interrupted:\n%s", stderr.String())
	}
	if len(programs) == 0 {
		t.Errorf("the demo held no BPF program while it ran: nothing to check; stderr:\n%s", stderr.String())
	}
	if loaded := leftovers.StillLoaded(programs, 10*time.Second); len(loaded) > 0 {
		t.Errorf("BPF programs of the demo still loaded: %v", loaded)
	}
	if ns, err := netlab.NamespacesOf(pid); err != nil || len(ns) > 0 {
		t.Errorf("namespaces of the demo left behind: %v %v", ns, err)
	}
	if procs := leftovers.InProcessGroup(pid); len(procs) > 0 {
		t.Errorf("processes of the demo left: %v", procs)
	}
}

// Not root, `discotrace demo` says so in one line and exits with status 2.
func TestDemoWithoutRootExits2(t *testing.T) {
	asDiscotrace(t.Name(), "demo")
	netlab.RequireRoot(t) // to drop to nobody
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skip("setpriv (util-linux) is not installed")
	}
	cmd := exec.Command(setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", os.Args[0], "-test.run=^"+t.Name()+"$")
	cmd.Env = append(os.Environ(), demoChildEnv+"="+t.Name())
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 {
		t.Fatalf("demo as nobody: %v, want exit status 2; stderr:\n%s", err, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], "needs root") || stdout.Len() > 0 {
		t.Errorf("stdout %q, stderr %q: want nothing, and one line saying the demo needs root", stdout.String(), stderr.String())
	}
}
