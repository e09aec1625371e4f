package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/discotrace/discotrace/tracer"
)

// Once the node is known, the send and recv programs attach to its cgroup; --whole-host,
// or a cgroup that cannot be read, keeps them on the root cgroup.
func TestTraceScopesToTheNodesCgroup(t *testing.T) {
	root, err := tracer.Cgroup2Root()
	if err != nil {
		t.Fatal("the tracer needs a cgroup v2 mount:", err)
	}
	proc := t.TempDir()
	for pid, line := range map[string]string{"42": "0::/system.slice/geth.service\n", "43": "0::/user.slice\n", "44": "0::/system.slice/geth.service/sub\n", "45": "0::/\n"} {
		os.MkdirAll(filepath.Join(proc, pid), 0o755)
		if err := os.WriteFile(filepath.Join(proc, pid, "cgroup"), []byte("4:memory:/x\n"+line), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	geth, user := filepath.Join(root, "system.slice/geth.service"), filepath.Join(root, "user.slice")
	for _, tc := range []struct {
		name      string
		pid       uint32
		found     []int
		wholeHost bool
		want      []string
		stderr    string
	}{
		{name: "no node known"},
		{name: "--pid", pid: 42, want: []string{geth}},
		{name: "--pid wins over the nodes found", pid: 43, found: []int{42}, want: []string{user}},
		{name: "nodes found", found: []int{42, 43, 44}, want: []string{geth, user, geth + "/sub"}},
		{name: "--whole-host", pid: 42, wholeHost: true},
		{name: "a node in the root cgroup", found: []int{42, 45}},
		{name: "unreadable cgroup", found: []int{42, 99}, stderr: "cannot find the cgroup of pid 99"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var f traceFlags
			f.procRoot, f.pid, f.nodePIDs, f.wholeHost = proc, tc.pid, tc.found, tc.wholeHost
			var cfg tracer.Config
			var stderr strings.Builder
			f.scopeToNodes(&stderr, &cfg)
			if !slices.Equal(cfg.Cgroups, tc.want) {
				t.Errorf("cgroups %q, want %q", cfg.Cgroups, tc.want)
			}
			if tc.stderr == "" && stderr.Len() > 0 || !strings.Contains(stderr.String(), tc.stderr) {
				t.Errorf("stderr %q, want %q", stderr.String(), tc.stderr)
			}
		})
	}
}
