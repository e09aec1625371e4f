package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/discotrace/discotrace/ndjson"
)

// `discotrace trace --raw` on a watched port: a datagram sent to it where nothing listens
// shows as one send, one icmp out, one icmp in and one drop line, valid NDJSON.
func TestTraceRawPrintsKernelEvents(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to load and attach BPF programs: run `sudo go test ./cmd/discotrace/`")
	}
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	port := c.LocalAddr().(*net.UDPAddr).Port
	c.Close() // now nothing listens on it

	var stdout bytes.Buffer
	stderr := &statusWriter{attached: make(chan struct{})}
	f := &traceFlags{raw: true, ports: []uint{uint(port)}, duration: 2 * time.Second, snapLen: 1280,
		ringSize: 8 << 20, backend: "auto", payload: true}
	done := make(chan error, 1)
	go func() { done <- runTrace(context.Background(), &stdout, stderr, f) }()
	select { // the duration counts from the attach
	case <-stderr.attached:
	case err := <-done:
		t.Fatalf("trace ended before attaching: %v (stderr: %s)", err, stderr.String())
	}
	peer, err := net.DialUDP("udp4", nil, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	if _, err := peer.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("trace: %v (stderr: %s)", err, stderr.String())
	}
	var types []string
	for _, line := range strings.Split(strings.TrimSpace(stdout.String()), "\n") {
		var ev ndjson.Event
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		want := peer.LocalAddr().String()
		if ev.Type == "send" && (ev.Src != want || ev.Payload != "70696e67" || ev.PID == nil || *ev.PID != uint32(os.Getpid())) {
			t.Errorf("send line %q: want src %s, payload 70696e67, pid %d", line, want, os.Getpid())
		}
		if ev.Type == "drop" && ev.Reason != "NO_SOCKET" {
			t.Errorf("drop line %q: want reason NO_SOCKET", line)
		}
		types = append(types, ev.Type+"/"+ev.Dir)
	}
	sort.Strings(types)
	if got := strings.Join(types, " "); got != "drop/ icmp/in icmp/out send/" {
		t.Errorf("event lines %q, want send, icmp out, drop, icmp in:\n%s", got, stdout.String())
	}
	if !strings.Contains(stderr.String(), "hooks attached in") || !strings.Contains(stderr.String(), "cgroup_skb/egress") {
		t.Errorf("stderr does not show the attach time and hooks:\n%s", stderr.String())
	}
}

// statusWriter collects trace's stderr and signals when the hooks are attached.
type statusWriter struct {
	mu       sync.Mutex
	buf      bytes.Buffer
	attached chan struct{} // closed once, when the attach line is written
	signaled bool
}

func (w *statusWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if !w.signaled && strings.Contains(w.buf.String(), "hooks attached in") {
		close(w.attached)
		w.signaled = true
	}
	return len(p), nil
}

func (w *statusWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}
