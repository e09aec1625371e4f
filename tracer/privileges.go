package tracer

import (
	"fmt"
	"strings"

	"golang.org/x/sys/unix"
)

// PrivilegeError says which capabilities the process lacks to trace.
type PrivilegeError struct {
	Missing []string // e.g. "CAP_BPF"
}

func (e *PrivilegeError) Error() string {
	return fmt.Sprintf("missing %s: run as root or grant CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN",
		strings.Join(e.Missing, ", "))
}

// CheckPrivileges returns a *PrivilegeError when the process cannot load and attach the
// tracer's programs: it needs CAP_BPF (load), CAP_PERFMON (tracing programs reading kernel
// memory) and CAP_NET_ADMIN (cgroup skb programs), or CAP_SYS_ADMIN, which implies them.
func CheckPrivileges() error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("read process capabilities: %w", err)
	}
	has := func(c int) bool { return data[c/32].Effective&(1<<(uint(c)%32)) != 0 }
	if has(unix.CAP_SYS_ADMIN) {
		return nil
	}
	var missing []string
	for _, c := range []struct {
		capability int
		name       string
	}{{unix.CAP_BPF, "CAP_BPF"}, {unix.CAP_PERFMON, "CAP_PERFMON"}, {unix.CAP_NET_ADMIN, "CAP_NET_ADMIN"}} {
		if !has(c.capability) {
			missing = append(missing, c.name)
		}
	}
	if len(missing) > 0 {
		return &PrivilegeError{Missing: missing}
	}
	return nil
}
