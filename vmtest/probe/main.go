// Command probe reports which BPF program kinds and hooks the running kernel really offers to
// discotrace: it asks cilium/ebpf's features package, then loads and attaches tiny programs
// and counts what they see while it sends a known number of UDP datagrams over loopback.
// It is the first thing vmtest boots on a new kernel:
//
//	vmtest/run.sh KERNEL=6.1,6.12 -- ./vmtest/probe -require fentry,kprobe,tp_btf,cgroup_skb,ringbuf
//
// Every line is "name: ok|no|FAIL detail". "no" is an answer (the kernel lacks it); FAIL is a
// hook that attached but saw a different number of datagrams than were sent. With -require,
// the exit status is 1 unless every named check is ok.
package main

import (
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"
)

// datagrams is how many datagrams the counting checks send; each counting hook must see
// exactly this many.
const datagrams = 5

// The functions and tracepoints discotrace's backends hook (issue 2 and 4).
var (
	udpFunctions = []string{"udp_sendmsg", "udpv6_sendmsg", "udp_recvmsg", "udpv6_recvmsg", "__udp4_lib_err", "__udp6_lib_err"}
	tracepoints  = []string{
		"sock_send_length", "sock_recv_length", "net_dev_queue", "net_dev_start_xmit",
		"netif_receive_skb", "sk_data_ready", "consume_skb", "kfree_skb",
		"inet_sk_error_report", "icmp_send", "udp_fail_queue_rcv_skb", "skb_copy_datagram_iovec",
	}
)

type result struct {
	name   string
	ok     bool
	failed bool // attached but counted wrong: a real failure, not an absent feature
	detail string
}

var results []result

func report(name string, err error, detail string) {
	r := result{name: name, ok: err == nil, detail: detail}
	if err != nil {
		r.detail = err.Error()
		var ce countError
		r.failed = errors.As(err, &ce)
	}
	results = append(results, r)
	state := "ok"
	switch {
	case r.failed:
		state = "FAIL"
	case !r.ok:
		state = "no"
	}
	fmt.Printf("%-48s %-4s %s\n", name+":", state, r.detail)
}

type countError struct{ got, want uint64 }

func (e countError) Error() string {
	return fmt.Sprintf("counted %d datagrams, sent %d", e.got, e.want)
}

func main() {
	require := flag.String("require", "", "comma-separated checks that must be ok (e.g. fentry,kprobe,tp_btf,cgroup_skb,ringbuf)")
	flag.Parse()
	if err := rlimit.RemoveMemlock(); err != nil {
		fmt.Fprintf(os.Stderr, "probe: %v\n", err)
		os.Exit(1)
	}
	var uts unix.Utsname
	_ = unix.Uname(&uts)
	fmt.Printf("kernel %s\n", unix.ByteSliceToString(uts.Release[:]))

	probeFeatures()
	probeBTF()
	if err := probeCounting(); err != nil {
		fmt.Fprintf(os.Stderr, "probe: %v\n", err)
		os.Exit(1)
	}
	probeAttachPoints()

	if *require == "" {
		return
	}
	byName := map[string]result{}
	for _, r := range results {
		byName[r.name] = r
	}
	var missing []string
	for _, name := range strings.Split(*require, ",") {
		if r, ok := byName[name]; !ok || !r.ok {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		fmt.Printf("required but not ok: %s\n", strings.Join(missing, ", "))
		os.Exit(1)
	}
	fmt.Printf("all required checks ok: %s\n", *require)
}

func probeFeatures() {
	for _, pt := range []ebpf.ProgramType{ebpf.Tracing, ebpf.Kprobe, ebpf.TracePoint, ebpf.RawTracepoint, ebpf.CGroupSKB, ebpf.SchedCLS} {
		report("features.program."+strings.ToLower(pt.String()), features.HaveProgramType(pt), "")
	}
	report("features.map.ringbuf", features.HaveMapType(ebpf.RingBuf), "")
	report("features.helper.kprobe.get_func_ip", features.HaveProgramHelper(ebpf.Kprobe, asm.FnGetFuncIp), "")
	report("features.helper.cgroup_skb.get_current_pid_tgid", features.HaveProgramHelper(ebpf.CGroupSKB, asm.FnGetCurrentPidTgid), "")
	report("features.helper.cgroup_skb.get_current_comm", features.HaveProgramHelper(ebpf.CGroupSKB, asm.FnGetCurrentComm), "")
	report("features.helper.cgroup_skb.get_socket_cookie", features.HaveProgramHelper(ebpf.CGroupSKB, asm.FnGetSocketCookie), "")
	report("features.helper.cgroup_skb.get_current_task", features.HaveProgramHelper(ebpf.CGroupSKB, asm.FnGetCurrentTask), "")
	report("features.helper.cgroup_skb.get_current_task_btf", features.HaveProgramHelper(ebpf.CGroupSKB, asm.FnGetCurrentTaskBtf), "")
	report("features.helper.cgroup_skb.probe_read_kernel", features.HaveProgramHelper(ebpf.CGroupSKB, asm.FnProbeReadKernel), "")
	report("features.helper.cgroup_skb.sk_storage_get", features.HaveProgramHelper(ebpf.CGroupSKB, asm.FnSkStorageGet), "")
	report("features.link.kprobe_multi", features.HaveBPFLinkKprobeMulti(), "")
	report("features.bounded_loops", features.HaveBoundedLoops(), "")
}

// kernelBTF is the running kernel's BTF, nil if it has none.
var kernelBTF *btf.Spec

func probeBTF() {
	spec, err := btf.LoadKernelSpec()
	report("btf.vmlinux", err, "")
	if err != nil {
		return
	}
	kernelBTF = spec
	var reasons *btf.Enum
	err = spec.TypeByName("skb_drop_reason", &reasons)
	detail := ""
	if err == nil {
		detail = fmt.Sprintf("%d values", len(reasons.Values))
	}
	report("btf.enum.skb_drop_reason", err, detail)
}

// probeCounting attaches one counting program per hook kind, sends datagrams from this
// process to a loopback socket, and checks every hook saw exactly that many.
func probeCounting() error {
	rx, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return fmt.Errorf("loopback socket: %w (is lo up?)", err)
	}
	defer rx.Close()
	port := uint16(rx.LocalAddr().(*net.UDPAddr).Port)
	tgid := uint32(os.Getpid())

	counters, err := ebpf.NewMap(&ebpf.MapSpec{Name: "probe_counts", Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 16})
	if err != nil {
		return fmt.Errorf("creating the counter map: %w", err)
	}
	defer counters.Close()

	type hook struct {
		name   string
		slot   uint32
		attach func(slot uint32) (link.Link, error)
	}
	tracing := func(at ebpf.AttachType, fn string) func(uint32) (link.Link, error) {
		return func(slot uint32) (link.Link, error) {
			prog, err := loadCounter(ebpf.Tracing, at, fn, counters, slot, tgid)
			if err != nil {
				return nil, err
			}
			defer prog.Close()
			return link.AttachTracing(link.TracingOptions{Program: prog})
		}
	}
	kprobe := func(ret bool) func(uint32) (link.Link, error) {
		return func(slot uint32) (link.Link, error) {
			prog, err := loadCounter(ebpf.Kprobe, ebpf.AttachNone, "", counters, slot, tgid)
			if err != nil {
				return nil, err
			}
			defer prog.Close()
			if ret {
				return link.Kretprobe("udp_sendmsg", prog, nil)
			}
			return link.Kprobe("udp_sendmsg", prog, nil)
		}
	}
	cgroup := func(at ebpf.AttachType) func(uint32) (link.Link, error) {
		return func(slot uint32) (link.Link, error) {
			root, err := cgroup2Root()
			if err != nil {
				return nil, err
			}
			prog, err := loadCgroupCounter(at, counters, slot, port)
			if err != nil {
				return nil, err
			}
			defer prog.Close()
			return link.AttachCgroup(link.CgroupOptions{Path: root, Attach: at, Program: prog})
		}
	}
	hooks := []hook{
		{"fentry", 0, tracing(ebpf.AttachTraceFEntry, "udp_sendmsg")},
		{"fexit", 1, tracing(ebpf.AttachTraceFExit, "udp_sendmsg")},
		{"kprobe", 2, kprobe(false)},
		{"kretprobe", 3, kprobe(true)},
		{"tp_btf", 4, tracing(ebpf.AttachTraceRawTp, "net_dev_queue")},
		{"cgroup_skb", 5, cgroup(ebpf.AttachCGroupInetEgress)},
		{"cgroup_skb.ingress", 6, cgroup(ebpf.AttachCGroupInetIngress)},
	}
	attached := map[string]link.Link{}
	for _, h := range hooks {
		l, err := h.attach(h.slot)
		if err != nil {
			report(h.name, err, "")
			continue
		}
		attached[h.name] = l
	}
	defer func() {
		for _, l := range attached {
			l.Close()
		}
	}()

	// The ring buffer check is a socket filter on the receiving socket: it sees only the
	// probe's datagrams and writes one record each.
	rb, rbErr := attachRingbufFilter(rx)
	if rb != nil {
		defer rb.Close()
	}

	tx, err := net.DialUDP("udp4", nil, rx.LocalAddr().(*net.UDPAddr))
	if err != nil {
		return fmt.Errorf("loopback sender: %w", err)
	}
	defer tx.Close()
	for i := 0; i < datagrams; i++ {
		if _, err := tx.Write([]byte(fmt.Sprintf("probe datagram %d", i))); err != nil {
			return fmt.Errorf("sending on loopback: %w", err)
		}
	}
	buf := make([]byte, 64)
	rx.SetReadDeadline(time.Now().Add(5 * time.Second))
	for i := 0; i < datagrams; i++ {
		if _, err := rx.Read(buf); err != nil {
			return fmt.Errorf("receiving datagram %d of %d on loopback: %w", i+1, datagrams, err)
		}
	}

	for _, h := range hooks {
		if _, ok := attached[h.name]; !ok {
			continue
		}
		var n uint64
		if err := counters.Lookup(h.slot, &n); err != nil {
			return err
		}
		var err error
		if n != datagrams {
			err = countError{n, datagrams}
		}
		report(h.name, err, fmt.Sprintf("attached, saw %d/%d datagrams", n, datagrams))
	}

	if rbErr != nil {
		report("ringbuf", rbErr, "")
	} else {
		n, err := drainRingbuf(rb, datagrams)
		if err == nil && n != datagrams {
			err = countError{uint64(n), datagrams}
		}
		report("ringbuf", err, fmt.Sprintf("read %d/%d records", n, datagrams))
	}
	return nil
}

// counterBody increments counters[slot] when the current process is tgid, and returns ret.
func counterBody(counters *ebpf.Map, slot, tgid uint32, ret int32) asm.Instructions {
	insns := asm.Instructions{
		asm.FnGetCurrentPidTgid.Call(),
		asm.RSh.Imm(asm.R0, 32),
		asm.JNE.Imm(asm.R0, int32(tgid), "out"),
	}
	return append(insns, countAndReturn(counters, slot, ret)...)
}

// countAndReturn increments counters[slot], then returns ret; earlier instructions jump
// to "out" to return ret without counting.
func countAndReturn(counters *ebpf.Map, slot uint32, ret int32) asm.Instructions {
	return asm.Instructions{
		asm.StoreImm(asm.RFP, -4, int64(slot), asm.Word),
		asm.LoadMapPtr(asm.R1, counters.FD()),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -4),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "out"),
		asm.Mov.Imm(asm.R1, 1),
		asm.StoreXAdd(asm.R0, asm.R1, asm.DWord),
		asm.Mov.Imm(asm.R0, ret).WithSymbol("out"),
		asm.Return(),
	}
}

func loadCounter(pt ebpf.ProgramType, at ebpf.AttachType, attachTo string, counters *ebpf.Map, slot, tgid uint32) (*ebpf.Program, error) {
	return ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:         "probe_count",
		Type:         pt,
		AttachType:   at,
		AttachTo:     attachTo,
		License:      "GPL",
		Instructions: counterBody(counters, slot, tgid, 0),
	})
}

// loadCgroupCounter counts IPv4 UDP packets to or from port (a cgroup_skb program sees the
// packet from the IP header; its pid helpers are not on every kernel, so it filters on the
// port). It always returns 1: let the packet through.
func loadCgroupCounter(at ebpf.AttachType, counters *ebpf.Map, slot uint32, port uint16) (*ebpf.Program, error) {
	const dstPort = 22 // offset of the UDP destination port after a 20-byte IPv4 header
	portBE := int32(binary.BigEndian.Uint16([]byte{byte(port), byte(port >> 8)}))
	insns := asm.Instructions{
		asm.LoadMem(asm.R2, asm.R1, 76, asm.Word), // __sk_buff.data
		asm.LoadMem(asm.R3, asm.R1, 80, asm.Word), // __sk_buff.data_end
		asm.Mov.Reg(asm.R4, asm.R2),
		asm.Add.Imm(asm.R4, 24),
		asm.JGT.Reg(asm.R4, asm.R3, "out"),
		asm.LoadMem(asm.R5, asm.R2, 0, asm.Byte),
		asm.JNE.Imm(asm.R5, 0x45, "out"), // IPv4 without options
		asm.LoadMem(asm.R5, asm.R2, 9, asm.Byte),
		asm.JNE.Imm(asm.R5, unix.IPPROTO_UDP, "out"),
		asm.LoadMem(asm.R5, asm.R2, dstPort, asm.Half),
		asm.JNE.Imm(asm.R5, portBE, "out"),
	}
	insns = append(insns, countAndReturn(counters, slot, 1)...)
	return ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:         "probe_cgroup",
		Type:         ebpf.CGroupSKB,
		AttachType:   at,
		License:      "GPL",
		Instructions: insns,
	})
}

// attachRingbufFilter attaches to rx a socket filter that writes the length of every packet
// to a ring buffer and accepts it.
func attachRingbufFilter(rx *net.UDPConn) (*ringbuf.Reader, error) {
	m, err := ebpf.NewMap(&ebpf.MapSpec{Name: "probe_ring", Type: ebpf.RingBuf, MaxEntries: 4096})
	if err != nil {
		return nil, err
	}
	defer m.Close()
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:    "probe_ring",
		Type:    ebpf.SocketFilter,
		License: "GPL",
		Instructions: asm.Instructions{
			asm.LoadMem(asm.R6, asm.R1, 0, asm.Word), // __sk_buff.len
			asm.StoreMem(asm.RFP, -8, asm.R6, asm.DWord),
			asm.LoadMapPtr(asm.R1, m.FD()),
			asm.Mov.Reg(asm.R2, asm.RFP),
			asm.Add.Imm(asm.R2, -8),
			asm.Mov.Imm(asm.R3, 8),
			asm.Mov.Imm(asm.R4, 0),
			asm.FnRingbufOutput.Call(),
			asm.Mov.Reg(asm.R0, asm.R6),
			asm.Return(),
		},
	})
	if err != nil {
		return nil, err
	}
	defer prog.Close()
	rd, err := ringbuf.NewReader(m)
	if err != nil {
		return nil, err
	}
	raw, err := rx.SyscallConn()
	if err != nil {
		rd.Close()
		return nil, err
	}
	var sockErr error
	if err := raw.Control(func(fd uintptr) {
		sockErr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ATTACH_BPF, prog.FD())
	}); err != nil {
		sockErr = err
	}
	if sockErr != nil {
		rd.Close()
		return nil, fmt.Errorf("SO_ATTACH_BPF: %w", sockErr)
	}
	return rd, nil
}

func drainRingbuf(rd *ringbuf.Reader, want int) (int, error) {
	n := 0
	rd.SetDeadline(time.Now().Add(2 * time.Second))
	for {
		rec, err := rd.Read()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		if len(rec.RawSample) != 8 {
			return n, fmt.Errorf("record of %d bytes, want 8", len(rec.RawSample))
		}
		n++
		if n > want {
			return n, nil
		}
		// Keep reading until the deadline: more records than datagrams is a failure too.
		rd.SetDeadline(time.Now().Add(200 * time.Millisecond))
	}
}

// probeAttachPoints tries, without counting, every function and tracepoint discotrace's
// backends hook, so a kernel's gaps show up by name.
func probeAttachPoints() {
	for _, fn := range udpFunctions {
		report("fentry/"+fn, tryTracing(ebpf.AttachTraceFEntry, fn), "")
		report("fexit/"+fn, tryTracing(ebpf.AttachTraceFExit, fn), "")
		report("kprobe/"+fn, tryKprobe(fn), "")
	}
	for _, tp := range tracepoints {
		report("tp_btf/"+tp, tryTracing(ebpf.AttachTraceRawTp, tp), tracepointArgs(tp))
	}
	report("kprobe_multi/udp_*", tryKprobeMulti(udpFunctions), "")
	report("tcx/lo", tryTCX("lo"), "")
}

// tracepointArgs names a BTF tracepoint's arguments (from the kernel's btf_trace_<name>
// typedef): they differ between kernels (kfree_skb gained rx_sk after 6.1), and a program
// reading an argument the kernel lacks is rejected.
func tracepointArgs(tp string) string {
	if kernelBTF == nil {
		return ""
	}
	var td *btf.Typedef
	if err := kernelBTF.TypeByName("btf_trace_"+tp, &td); err != nil {
		return ""
	}
	ptr, ok := td.Type.(*btf.Pointer)
	if !ok {
		return ""
	}
	proto, ok := ptr.Target.(*btf.FuncProto)
	if !ok || len(proto.Params) == 0 {
		return ""
	}
	var names []string
	for _, p := range proto.Params[1:] { // the first is the tracepoint's void *__data
		names = append(names, typeName(p.Type))
	}
	return fmt.Sprintf("%d args: %s", len(names), strings.Join(names, ", "))
}

// typeName spells a BTF type the way C declares it (BTF keeps no tracepoint argument names).
func typeName(t btf.Type) string {
	switch t := t.(type) {
	case *btf.Pointer:
		return typeName(t.Target) + " *"
	case *btf.Const:
		return "const " + typeName(t.Type)
	case *btf.Volatile:
		return typeName(t.Type)
	case *btf.Struct:
		return "struct " + t.Name
	case *btf.Union:
		return "union " + t.Name
	case *btf.Enum:
		return "enum " + t.Name
	case *btf.Void:
		return "void"
	default:
		if name := t.TypeName(); name != "" {
			return name
		}
		return fmt.Sprintf("%T", t)
	}
}

func trivial(pt ebpf.ProgramType, at ebpf.AttachType, attachTo string) (*ebpf.Program, error) {
	return ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:         "probe_attach",
		Type:         pt,
		AttachType:   at,
		AttachTo:     attachTo,
		License:      "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()},
	})
}

func tryTracing(at ebpf.AttachType, target string) error {
	prog, err := trivial(ebpf.Tracing, at, target)
	if err != nil {
		return err
	}
	defer prog.Close()
	l, err := link.AttachTracing(link.TracingOptions{Program: prog})
	if err != nil {
		return err
	}
	return l.Close()
}

func tryKprobe(fn string) error {
	prog, err := trivial(ebpf.Kprobe, ebpf.AttachNone, "")
	if err != nil {
		return err
	}
	defer prog.Close()
	l, err := link.Kprobe(fn, prog, nil)
	if err != nil {
		return err
	}
	return l.Close()
}

func tryKprobeMulti(fns []string) error {
	prog, err := trivial(ebpf.Kprobe, ebpf.AttachTraceKprobeMulti, "")
	if err != nil {
		return err
	}
	defer prog.Close()
	l, err := link.KprobeMulti(prog, link.KprobeMultiOptions{Symbols: fns})
	if err != nil {
		return err
	}
	return l.Close()
}

func tryTCX(dev string) error {
	iface, err := net.InterfaceByName(dev)
	if err != nil {
		return err
	}
	prog, err := trivial(ebpf.SchedCLS, ebpf.AttachTCXIngress, "")
	if err != nil {
		return err
	}
	defer prog.Close()
	l, err := link.AttachTCX(link.TCXOptions{Interface: iface.Index, Program: prog, Attach: ebpf.AttachTCXIngress})
	if err != nil {
		return err
	}
	return l.Close()
}

// cgroup2Root finds the cgroup v2 mount (the unified hierarchy, wherever a hybrid host puts it).
func cgroup2Root() (string, error) {
	b, err := os.ReadFile("/proc/mounts")
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && f[2] == "cgroup2" {
			return f[1], nil
		}
	}
	return "", errors.New("no cgroup2 mount in /proc/mounts")
}
