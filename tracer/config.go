package tracer

import (
	"errors"
	"fmt"
	"os"
	"time"
)

// Config says what to watch and how to deliver it. The zero value of each field but Ports
// means its default.
type Config struct {
	// Ports are the UDP ports to watch: a datagram is traced when its source or
	// destination port is one of them. At least one, never 0.
	Ports []uint16
	// SnapLen is how many payload bytes are captured per datagram: 0 means the default,
	// MaxSnapLen (1280, the largest discv5 packet); at most MaxSnapLen. NoPayload
	// captures none.
	SnapLen int
	// RingSize is the ring buffer size in bytes: a power of two and a multiple of the page
	// size. 0 means 8 MiB.
	RingSize int
	// Backend chooses the hooks: "auto" (the default: per event class the best this
	// kernel offers, fentry, then kprobe, then tracepoint), or one of "fentry", "kprobe"
	// and "tracepoint" for every class that has programs of that backend (Open fails if
	// the kernel cannot run them). Classes only skb-level programs and tracepoints serve
	// (recv, icmp-out, drop) use them whatever the backend.
	Backend string
	// NetNS, when not 0, keeps only events of the network namespace with this inode
	// (as in `ls -L -i /proc/PID/ns/net`).
	NetNS uint32
	// PID, when not 0, keeps only send and read events of this process (tgid).
	PID uint32
	// Cgroups, when not empty, are the cgroup v2 directories the send and recv programs
	// (cgroup_skb) attach to, instead of the cgroup v2 root: only sockets created by
	// processes in them or below them are seen sending and receiving, and the rest of the
	// host never runs those programs. The other programs (read, drop, icmp-in) hook the
	// whole host whatever this says. ICMP errors the kernel sends itself leave through
	// its own socket, which is seldom in these cgroups (see the plan's icmp-out). The
	// cgroup v2 root among them means the whole host.
	Cgroups []string
	// LostInterval is how often the per-CPU lost-event counters are checked and reported.
	// 0 means one second.
	LostInterval time.Duration
}

const (
	// MaxSnapLen is the largest payload capture per datagram.
	MaxSnapLen = int(discotraceDtLimitsDT_MAX_SNAP_LEN)
	// NoPayload as Config.SnapLen captures no payload bytes.
	NoPayload = -1

	DefaultRingSize     = 8 << 20
	DefaultLostInterval = time.Second

	BackendAuto       = "auto"
	BackendFentry     = "fentry"
	BackendKprobe     = "kprobe"
	BackendTracepoint = "tracepoint"
)

// withDefaults returns cfg with defaults filled in, or an error saying what to change.
func (cfg Config) withDefaults() (Config, error) {
	if len(cfg.Ports) == 0 {
		return cfg, errors.New("no port to watch: give at least one UDP port")
	}
	for _, p := range cfg.Ports {
		if p == 0 {
			return cfg, errors.New("port 0 cannot be watched: give UDP ports 1-65535")
		}
	}
	switch {
	case cfg.SnapLen == 0:
		cfg.SnapLen = MaxSnapLen
	case cfg.SnapLen == NoPayload:
	case cfg.SnapLen < 0 || cfg.SnapLen > MaxSnapLen:
		return cfg, fmt.Errorf("snap length %d out of range: give 0-%d bytes", cfg.SnapLen, MaxSnapLen)
	}
	if cfg.RingSize == 0 {
		cfg.RingSize = DefaultRingSize
	}
	page := os.Getpagesize()
	if cfg.RingSize < page || cfg.RingSize&(cfg.RingSize-1) != 0 || cfg.RingSize > 1<<30 {
		return cfg, fmt.Errorf("ring buffer size %d bytes is not valid: give a power of two from the page size (%d) to 1 GiB, e.g. %d", cfg.RingSize, page, DefaultRingSize)
	}
	switch cfg.Backend {
	case "":
		cfg.Backend = BackendAuto
	case BackendAuto, BackendFentry, BackendKprobe, BackendTracepoint:
	default:
		return cfg, fmt.Errorf("unknown backend %q: use %q, %q, %q or %q", cfg.Backend, BackendAuto, BackendFentry, BackendKprobe, BackendTracepoint)
	}
	cfg.Cgroups = outermostCgroups(cfg.Cgroups)
	if cfg.LostInterval == 0 {
		cfg.LostInterval = DefaultLostInterval
	}
	if cfg.LostInterval < 0 {
		return cfg, fmt.Errorf("lost interval %v is negative", cfg.LostInterval)
	}
	return cfg, nil
}

// snapLen is the capture length the BPF side uses.
func (cfg Config) snapLen() uint32 {
	if cfg.SnapLen < 0 {
		return 0
	}
	return uint32(cfg.SnapLen)
}
