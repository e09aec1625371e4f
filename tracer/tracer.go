package tracer

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"
)

// ErrClosed is returned by Read once the Tracer is closed.
var ErrClosed = errors.New("tracer closed")

// pollInterval bounds a sleeping reader's wait: the programs wake it at its first record,
// and this is the backstop should a wakeup not come (see submit in bpf/discotrace.bpf.c).
const pollInterval = 100 * time.Millisecond

// readsPerClock is how many records in a row Read takes from a ring that holds more
// before it looks at the clock again (the lost check, the next wait's deadline): without
// a clock read and a deadline per record a busy reader takes 195 ns a record, not 270.
const readsPerClock = 64

// MaxDeliveryDelay bounds how long after it happened an event is returned by Read (while
// the reader keeps up): consumers that judge timeouts by the wall clock allow for it.
const MaxDeliveryDelay = pollInterval

// Tracer is an attached set of programs and the ring buffer they fill.
type Tracer struct {
	cfg          Config
	plan         []HookChoice
	coll         *ebpf.Collection // the programs this kernel can run, and the maps
	helpers      skbHelpers       // what the cgroup_skb and send-result programs may call here
	events       *ebpf.Map
	lostEvents   *ebpf.Map
	watchedPorts *ebpf.Map
	links        []link.Link
	reader       *ringbuf.Reader
	sleepFlag    *sleepFlag
	clock        monoClock
	reasons      dropReasons
	// inferQueueReason: the kernel names no drop reasons, and dt_fail_queue tells a full
	// receive buffer's.
	inferQueueReason bool
	symbols          *kernelSymbols

	readMu          sync.Mutex // held by Read; Close takes it to free what Read uses
	rec             ringbuf.Record
	parser          recordParser
	nextLostCheck   time.Time
	lastLostCheck   time.Time // when the lost counters were last read: a loss reported next happened after it
	lostReported    uint64
	lostPerCPU      []uint64
	drainDone       bool          // the ring buffer was emptied into drained after Close
	sleeping        bool          // the programs were told to wake Read at the next record
	sleepPoll       time.Duration // pollInterval; a test lengthens it so that only a wakeup ends the wait
	gotSincePoll    bool          // Read returned a record since its last wait ran out
	readsSinceClock int           // records Read took without looking at the clock
	drained         []Event       // what Read returns after Close, before ErrClosed
	undecodable     uint64        // drained records that did not decode, reported as lost

	// caughtUp is when (Unix ns) a Read last found the ring empty, or began a wait that
	// then found it empty without returning anything in between (see DeliveredUntil).
	caughtUp atomic.Int64

	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error
}

// Open loads the programs, fills the watched ports, attaches every hook of the plan and
// starts the ring buffer reader. On error nothing stays loaded or attached.
func Open(cfg Config) (*Tracer, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := CheckPrivileges(); err != nil {
		return nil, err
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("raise RLIMIT_MEMLOCK for BPF maps: %w", err)
	}
	t := &Tracer{cfg: cfg, clock: newMonoClock()}
	// Reading /proc/kallsyms takes the kernel a good part of Open's time: do it meanwhile.
	// Without symbols drops carry no location, the tracepoint backend's ICMP-in program
	// parses every consumed packet instead of only icmp_rcv's (slower, still correct),
	// and the kprobe backend cannot check beforehand that its functions exist.
	symbolsRead := make(chan struct{})
	go func() {
		defer close(symbolsRead)
		t.symbols, _ = loadKernelSymbols()
	}()
	defer func() { <-symbolsRead }() // never leave it running, whatever Open returns
	kernel, err := loadKernelBTF()
	if err != nil {
		return nil, err
	}
	if t.reasons, err = loadDropReasons(kernel); err != nil {
		return nil, err
	}
	tpArgs := tracepointArgs(kernel)
	cgroupRoot, err := Cgroup2Root()
	if err != nil {
		return nil, err
	}
	if slices.Contains(cfg.Cgroups, cgroupRoot) {
		cfg.Cgroups = nil // the whole host, as without
	}
	cgroups := cfg.Cgroups
	if len(cgroups) == 0 {
		cgroups = []string{cgroupRoot}
	}
	spec, err := loadDiscotrace()
	if err != nil {
		return nil, fmt.Errorf("read the embedded BPF object: %w", err)
	}
	<-symbolsRead
	spec.Maps["events"].MaxEntries = uint32(cfg.RingSize)
	ch, err := chooseBackends(cfg.Backend, probeBackends(cfg.Backend, kernel, t.symbols))
	if err != nil {
		return nil, err
	}
	// Only the chosen backends' programs are loaded (the kernel refuses the others: that
	// is why they were not chosen). A program whose tracepoint this kernel lacks is left
	// out too; the plan says what that costs. The rest must load.
	missing := unavailable(tpArgs)
	unneeded := unneededPrograms(t.reasons)
	load := ch.programsToLoad(unneeded)
	t.helpers = probeSkbHelpers()
	if err := t.setConstants(spec, tpArgs, missing, load, t.helpers, ch, kernel); err != nil {
		return nil, err
	}
	for name := range spec.Programs {
		if _, gone := missing[name]; gone || !load[name] {
			delete(spec.Programs, name)
		}
	}
	t.coll, err = ebpf.NewCollection(spec)
	if err != nil && verifierSaid(err, "BPF_STX uses reserved fields") {
		// A verifier without atomic fetch operations (before Linux 5.12) refuses them
		// before looking at anything else: load the programs without them.
		if err := withoutAtomicFetch(spec); err != nil {
			return nil, err
		}
		t.coll, err = ebpf.NewCollection(spec)
	}
	if err != nil {
		var verr *ebpf.VerifierError
		if errors.As(err, &verr) {
			return nil, fmt.Errorf("the kernel rejected the BPF programs: %+v", verr)
		}
		if errors.Is(err, unix.EPERM) {
			return nil, fmt.Errorf("load BPF programs: %w: run as root or grant CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN", err)
		}
		return nil, fmt.Errorf("load BPF programs: %w", err)
	}
	t.events, t.lostEvents, t.watchedPorts = t.coll.Maps["events"], t.coll.Maps["lost_events"], t.coll.Maps["watched_ports"]
	if err := t.watchPorts(); err != nil {
		t.coll.Close()
		return nil, err
	}
	attachPoints, err := t.attach(cgroups)
	if err != nil {
		t.detach()
		t.coll.Close()
		return nil, err
	}
	if t.reader, err = ringbuf.NewReader(t.events); err != nil {
		t.detach()
		t.coll.Close()
		return nil, fmt.Errorf("open ring buffer reader: %w", err)
	}
	if t.sleepFlag, err = mapSleepFlag(t.coll.Maps["reader_sleeping"]); err != nil {
		t.detach()
		t.reader.Close()
		t.coll.Close()
		return nil, err
	}
	t.rec.RawSample = make([]byte, 0, recordBufferSize)
	limits := t.helpers.limits()
	for class, l := range reasonLimits(t.reasons, !t.inferQueueReason) {
		limits[class] = append(limits[class], l...)
	}
	if len(cfg.Cgroups) > 0 {
		limits["icmp-out"] = append(limits["icmp-out"], "the ICMP errors the kernel sends itself (port unreachable): they leave through its own socket, which is outside the traced cgroups unless it was created in one")
	}
	t.plan = makePlan(ch, unneeded, attachPoints, missing, limits)
	t.sleepPoll = pollInterval
	t.lastLostCheck = time.Now()
	t.nextLostCheck = t.lastLostCheck.Add(cfg.LostInterval)
	return t, nil
}

func (t *Tracer) setConstants(spec *ebpf.CollectionSpec, tpArgs map[string]int, missing map[string]string, load map[string]bool, helpers skbHelpers, ch choice, kernel *btf.Spec) error {
	consts := map[string]any{
		"cfg_snap_len":             t.cfg.snapLen(),
		"cfg_netns":                t.cfg.NetNS,
		"cfg_pid":                  t.cfg.PID,
		"cfg_port_min":             slices.Min(t.cfg.Ports),
		"cfg_port_max":             slices.Max(t.cfg.Ports),
		"cfg_reason_not_specified": t.reasons.value("NOT_SPECIFIED"),
		"cfg_reason_rcvbuff":       t.reasons.value("SOCKET_RCVBUFF"),
		"cfg_reason_proto_mem":     t.reasons.value("PROTO_MEM"),
		"cfg_reason_socket_filter": t.reasons.value("SOCKET_FILTER"),
		// (skb, location) since Linux 6.3; (skb, location, reason, rx_sk) since 6.11.
		"cfg_consume_skb_has_location": tpArgs["consume_skb"] >= 2,
		"cfg_kfree_skb_has_rx_sk":      tpArgs["kfree_skb"] >= 4,
		"cfg_kfree_skb_has_reason":     tpArgs["kfree_skb"] >= 3,
		"cfg_error_reports_seen":       missing["dt_error_report"] == "",
		"cfg_skb_task_helpers":         helpers.task,
		"cfg_skb_probe_read":           helpers.probeRead,
		"cfg_send_call_regs":           helpers.sendCall,
		"cfg_tracing_socket_cookie":    helpers.tracingCookie,
		"cfg_task_btf":                 helpers.taskBTF,
		// The tracepoint backend reports icmp in when the ICMP packet is freed; the
		// others from the UDP error handlers (each error once).
		"cfg_icmp_in_by_free":     ch.backend["icmp-in"] == BackendTracepoint,
		"cfg_recvmsg_has_noblock": recvmsgHasNoblock(kernel),
		"cfg_unpush_by_enqueue":   ch.backend["read"] != BackendTracepoint,
	}
	if lo, hi, ok := t.symbols.span("icmp_rcv"); ok {
		consts["cfg_icmp_rcv_lo"], consts["cfg_icmp_rcv_hi"] = lo, hi
		if lo6, hi6, ok := t.symbols.span("icmpv6_rcv"); ok {
			consts["cfg_icmpv6_rcv_lo"], consts["cfg_icmpv6_rcv_hi"] = lo6, hi6
		}
	}
	// Frees of a socket's leftover packets when it closes: not network drops.
	var closeLo, closeHi [2]uint64
	for i, fn := range []string{"udp_destruct_common", "inet_sock_destruct"} {
		closeLo[i], closeHi[i], _ = t.symbols.span(fn)
	}
	consts["cfg_close_free_lo"], consts["cfg_close_free_hi"] = closeLo, closeHi
	// Frees inside recvmsg (checksum checked when read): the reader's netns, and the
	// datagram leaves the socket's queue of arrivals.
	var recvLo, recvHi [2]uint64
	for i, fn := range []string{"udp_recvmsg", "udpv6_recvmsg"} {
		recvLo[i], recvHi[i], _ = t.symbols.span(fn)
	}
	consts["cfg_recvmsg_lo"], consts["cfg_recvmsg_hi"] = recvLo, recvHi
	// Where the socket queue's refusal is freed, for dt_fail_queue to name its reason on
	// kernels without reasons (the __ functions are usually inlined into the others).
	var queueLo, queueHi [4]uint64
	for i, fn := range []string{"udp_queue_rcv_one_skb", "__udp_queue_rcv_skb", "udpv6_queue_rcv_one_skb", "__udpv6_queue_rcv_skb"} {
		queueLo[i], queueHi[i], _ = t.symbols.span(fn)
	}
	consts["cfg_queue_rcv_lo"], consts["cfg_queue_rcv_hi"] = queueLo, queueHi
	t.inferQueueReason = tpArgs["kfree_skb"] < 3 && load["dt_fail_queue"] && missing["dt_fail_queue"] == "" && queueLo != [4]uint64{}
	consts["cfg_infer_queue_reason"] = t.inferQueueReason
	for name, v := range consts {
		vs, ok := spec.Variables[name]
		if !ok {
			return fmt.Errorf("BPF object has no variable %s: regenerate it (make generate)", name)
		}
		if err := vs.Set(v); err != nil {
			return fmt.Errorf("set %s: %w", name, err)
		}
	}
	return nil
}

// watchPorts fills the watched-port bitmap.
func (t *Tracer) watchPorts() error {
	var words [65536 / 64]uint64
	for _, p := range t.cfg.Ports {
		words[p>>6] |= 1 << (p & 63)
	}
	for i, w := range words {
		if w == 0 {
			continue
		}
		if err := t.watchedPorts.Put(uint32(i), w); err != nil {
			return fmt.Errorf("fill watched ports map: %w", err)
		}
	}
	return nil
}

// attach links every loaded program, the cgroup programs to each of cgroups; it returns
// each one's attach point for the plan.
func (t *Tracer) attach(cgroups []string) (map[string]string, error) {
	points := map[string]string{}
	var cgs []*os.File
	defer func() {
		for _, cg := range cgs {
			cg.Close()
		}
	}()
	for _, dir := range cgroups {
		cg, err := openCgroup(dir)
		if err != nil {
			return nil, err
		}
		cgs = append(cgs, cg)
	}
	cgroupList := strings.Join(cgroups, ", ")
	for _, p := range programs {
		prog := t.coll.Programs[p.name]
		if prog == nil {
			continue // not chosen, or this kernel cannot run it
		}
		// Always BPF links or perf events owned by this process, never the legacy
		// attach: they go away with it.
		switch {
		case p.tracepoint != "" || p.backend == BackendFentry:
			l, err := link.AttachTracing(link.TracingOptions{Program: prog})
			if err != nil {
				return nil, fmt.Errorf("attach %s to %s: %w", p.name, p.attachPoint(cgroupList), err)
			}
			t.links = append(t.links, l)
		case p.backend == BackendKprobe:
			attachKprobe := link.Kprobe
			if p.ret {
				attachKprobe = link.Kretprobe
			}
			for _, fn := range p.functions {
				l, err := attachKprobe(fn, prog, nil)
				if err != nil {
					return nil, fmt.Errorf("attach %s to %s: %w", p.name, fn, err)
				}
				t.links = append(t.links, l)
			}
		default:
			for _, cg := range cgs {
				l, err := link.AttachRawLink(link.RawLinkOptions{Target: int(cg.Fd()), Program: prog, Attach: p.cgroup})
				if err != nil {
					return nil, fmt.Errorf("attach %s to cgroup %s: %w", p.name, cg.Name(), err)
				}
				t.links = append(t.links, l)
			}
		}
		points[p.name] = p.attachPoint(cgroupList)
	}
	return points, nil
}

func (t *Tracer) detach() error {
	var errs []error
	for _, l := range t.links {
		if err := l.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	t.links = nil
	return errors.Join(errs...)
}

// Cgroup2Root finds the cgroup v2 hierarchy's mount point, where the send and recv
// programs attach: /sys/fs/cgroup on unified systems, /sys/fs/cgroup/unified in hybrid
// mode. The error says how to mount one.
func Cgroup2Root() (string, error) {
	mounts, err := os.ReadFile("/proc/mounts")
	if err != nil {
		return "", fmt.Errorf("find the cgroup v2 mount: %w", err)
	}
	if root, ok := cgroup2Mount(string(mounts)); ok {
		return root, nil
	}
	return "", errors.New("no cgroup v2 filesystem in /proc/mounts: mount one (mount -t cgroup2 none /sys/fs/cgroup/unified)")
}

// Plan returns the hook chosen for each event class, and why others were not.
func (t *Tracer) Plan() []HookChoice {
	return append([]HookChoice(nil), t.plan...)
}

// Read returns the next event, blocking until there is one. Lost events are reported as
// KindLost events among the others. After Close, it returns the events that were still in
// the ring buffer and a last lost report, then ErrClosed.
func (t *Tracer) Read() (Event, error) {
	t.readMu.Lock()
	defer t.readMu.Unlock()
	for {
		if t.closed.Load() {
			t.drainLocked()
			if len(t.drained) == 0 {
				return Event{}, ErrClosed
			}
			ev := t.drained[0]
			t.drained = t.drained[1:]
			return ev, nil
		}
		if t.rec.Remaining > 0 && t.readsSinceClock < readsPerClock {
			// The ring holds more, so ReadInto returns a record without waiting: the
			// clock, the lost check and the deadline can wait a few records.
			t.readsSinceClock++
			err := t.reader.ReadInto(&t.rec)
			if err == nil {
				t.gotSincePoll = true
				return t.parseRecord(t.rec.RawSample)
			}
			// Close's flush is seen at the top of the loop, anything else by the full path.
			t.rec.Remaining = 0
			continue
		}
		t.readsSinceClock = 0
		now := time.Now()
		if !now.Before(t.nextLostCheck) {
			t.nextLostCheck = now.Add(t.cfg.LostInterval)
			since := t.lastLostCheck
			lost, err := t.lostSinceLastReport(now)
			if err != nil {
				return Event{}, err
			}
			if lost > 0 {
				return Event{Kind: KindLost, Time: now, Lost: lost, LostSince: since}, nil
			}
		}
		if !t.sleeping && t.reader.AvailableBytes() == 0 {
			// Nothing reserved in the ring: everything written before now was returned.
			t.caughtUp.Store(now.UnixNano())
			if t.gotSincePoll {
				t.gotSincePoll = false
				time.Sleep(busyWait)
				continue
			}
			t.sleep()
		}
		deadline := now.Add(busyPoll)
		if t.sleeping {
			deadline = now.Add(t.sleepPoll)
		}
		if t.nextLostCheck.Before(deadline) {
			deadline = t.nextLostCheck
		}
		t.reader.SetDeadline(deadline)
		err := t.reader.ReadInto(&t.rec)
		if err != nil {
			t.rec.Remaining = 0 // what it said of the last record no longer holds
		}
		switch {
		case err == nil:
			if t.sleeping {
				t.sleeping = false
				t.sleepFlag.set(0)
			}
			t.gotSincePoll = true
			return t.parseRecord(t.rec.RawSample)
		case errors.Is(err, os.ErrDeadlineExceeded):
			// The reader returns this only once it has read the ring empty: everything
			// written before now was returned, by this call or earlier ones.
			t.caughtUp.Store(now.UnixNano())
			if !t.sleeping && !t.gotSincePoll {
				t.sleep()
			}
			t.gotSincePoll = false
		case errors.Is(err, ringbuf.ErrFlushed):
			// Woken by Close to drain.
		default:
			return Event{}, fmt.Errorf("read ring buffer: %w", err)
		}
	}
}

// sleep tells the programs to wake Read at the next record, once a wait of busyWait found
// none: from then on Read waits up to pollInterval. The ring is looked at after the flag
// is stored, so a record that came before it is read rather than slept on.
func (t *Tracer) sleep() {
	t.sleepFlag.set(1)
	if t.reader.AvailableBytes() > 0 {
		t.sleepFlag.set(0)
		return
	}
	t.sleeping = true
}

// DeliveredUntil returns a time before which every event has been returned by Read, with
// Read called again since (so its caller has dealt with it): the last time a Read found
// the ring buffer empty, less MaxDeliveryDelay (an event is stamped before it is written).
// A consumer that has processed all it got from Read may judge timeouts as of then: no
// older event is still on its way. It stays put while the ring is never found empty (the
// events themselves then move time on), and is zero until the first time it is. Safe to
// call beside Read. (A boolean "ring empty" would race: a record taken from the ring just
// before the check is neither in the ring nor yet with the caller.)
func (t *Tracer) DeliveredUntil() time.Time {
	ns := t.caughtUp.Load()
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns).Add(-MaxDeliveryDelay)
}

// drainLocked, once the programs are detached, moves what is left in the ring buffer and
// the last lost count into t.drained, for Read to hand out after Close. Called with
// readMu held, by whichever of Read and Close comes first.
func (t *Tracer) drainLocked() {
	if t.drainDone {
		return
	}
	t.drainDone = true
	t.reader.SetDeadline(time.Now()) // no waiting: only what is there
	for t.reader.ReadInto(&t.rec) == nil {
		// A record that does not decode cannot be delivered: count it as lost.
		if ev, err := t.parseRecord(t.rec.RawSample); err == nil {
			t.drained = append(t.drained, ev)
		} else {
			t.undecodable++
		}
	}
	since, now := t.lastLostCheck, time.Now()
	if lost, err := t.lostSinceLastReport(now); err == nil && lost+t.undecodable > 0 {
		t.drained = append(t.drained, Event{Kind: KindLost, Time: now, Lost: lost + t.undecodable, LostSince: since})
	}
}

// lostSinceLastReport sums the per-CPU lost counters, read at now, and returns the growth
// since the last report.
func (t *Tracer) lostSinceLastReport(now time.Time) (uint64, error) {
	if err := t.lostEvents.Lookup(uint32(0), &t.lostPerCPU); err != nil {
		return 0, fmt.Errorf("read lost event counters: %w", err)
	}
	t.lastLostCheck = now
	var total uint64
	for _, n := range t.lostPerCPU {
		total += n
	}
	delta := total - t.lostReported
	t.lostReported = total
	return delta, nil
}

// Close detaches every program at once and frees the kernel objects. Events already in
// the ring buffer are kept: Read returns them and a last lost report, then ErrClosed. A
// Read blocked in another goroutine wakes up to do so.
func (t *Tracer) Close() error {
	t.closeOnce.Do(func() {
		errs := []error{t.detach()} // no new events from here on
		t.closed.Store(true)
		errs = append(errs, t.reader.Flush()) // wake a blocked Read
		t.readMu.Lock()
		t.drainLocked()
		errs = append(errs, t.reader.Close(), t.sleepFlag.close())
		t.coll.Close()
		t.readMu.Unlock()
		t.closeErr = errors.Join(errs...)
	})
	return t.closeErr
}
