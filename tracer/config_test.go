package tracer

import (
	"os"
	"strings"
	"testing"
	"time"
)

func TestConfigDefaults(t *testing.T) {
	cfg, err := Config{Ports: []uint16{30303}}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.SnapLen != 1280 || cfg.RingSize != 8<<20 || cfg.Backend != "auto" || cfg.LostInterval != time.Second {
		t.Errorf("defaults: %+v", cfg)
	}
	if cfg, _ := (Config{Ports: []uint16{1}, SnapLen: NoPayload}).withDefaults(); cfg.snapLen() != 0 {
		t.Errorf("NoPayload gives a snap length of %d", cfg.snapLen())
	}
}

func TestConfigErrorsSayWhatToDo(t *testing.T) {
	page := os.Getpagesize()
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{}, "give at least one UDP port"},
		{Config{Ports: []uint16{0}}, "give UDP ports 1-65535"},
		{Config{Ports: []uint16{1}, SnapLen: 1281}, "give 0-1280 bytes"},
		{Config{Ports: []uint16{1}, SnapLen: -2}, "give 0-1280 bytes"},
		{Config{Ports: []uint16{1}, RingSize: 3 * page}, "give a power of two"},
		{Config{Ports: []uint16{1}, RingSize: page / 2}, "give a power of two"},
		{Config{Ports: []uint16{1}, Backend: "ebpf"}, `use "auto", "fentry", "kprobe" or "tracepoint"`},
		{Config{Ports: []uint16{1}, LostInterval: -time.Second}, "negative"},
	} {
		_, err := tc.cfg.withDefaults()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want one saying %q", tc.cfg, err, tc.want)
		}
	}
}

func TestCgroup2Mount(t *testing.T) {
	for _, tc := range []struct {
		mounts, want string
		ok           bool
	}{
		{"cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid 0 0\n", "/sys/fs/cgroup", true},
		{"tmpfs /sys/fs/cgroup tmpfs ro 0 0\ncgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0\ncgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\n", "/sys/fs/cgroup/unified", true},
		{`none /mnt/my\040cgroups cgroup2 rw 0 0`, "/mnt/my cgroups", true},
		{"cgroup /sys/fs/cgroup/cpu cgroup rw 0 0\n", "", false},
	} {
		got, ok := cgroup2Mount(tc.mounts)
		if got != tc.want || ok != tc.ok {
			t.Errorf("cgroup2Mount(%q) = %q, %v; want %q, %v", tc.mounts, got, ok, tc.want, tc.ok)
		}
	}
}
