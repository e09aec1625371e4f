// Package tracer captures, in the kernel, the UDP datagrams of watched ports and what the
// kernel does to them: sends, arrivals, the application's reads, ICMP errors in both
// directions, and drops with the kernel's own reason. It knows the kernel, not protocols.
//
// # API
//
//	tr, err := tracer.Open(tracer.Config{Ports: []uint16{30303}})
//	defer tr.Close()
//	for _, h := range tr.Plan() { ... }          // which hook serves each event class, and why
//	for {
//		ev, err := tr.Read()                   // blocks; ErrClosed once closed and drained
//		...
//	}
//
// Read is meant for one goroutine; Close may be called from any goroutine. Close detaches
// at once; the events still in the ring buffer and a last lost report stay readable, so
// Read returns them and then ErrClosed (a blocked Read wakes up to do so).
// Events the kernel side could not deliver because the ring buffer was full are counted
// per CPU and reported by Read as KindLost events (every Config.LostInterval, when the
// count grew), never hidden.
//
// Nothing is pinned: every program is attached through a BPF link owned by this process,
// so Close, or the process dying, detaches everything.
//
// # Hook plan
//
// Each event class has candidate backends, best first: fentry, kprobe, tracepoint. Open
// probes the first two and reports in Plan why they were not used (on the development
// kernel, 6.18 with lockdown, fentry attach fails with EPERM and kprobes are not built
// in; this build carries programs for the tracepoint backend only). The tracepoint
// backend, tracepoints plus skb-level cgroup programs on the cgroup v2 root, is:
//
//	send      cgroup_skb/egress (sender's pid/comm, tuple, payload) and
//	          tp_btf/sock_send_length (sends that failed, with their -errno)
//	recv      cgroup_skb/ingress: datagrams reaching a socket, before its queue
//	read      tp_btf/sock_recv_length: the reader, and the time the datagram waited
//	icmp in   tp_btf/consume_skb in icmp_rcv/icmpv6_rcv, with tp_btf/inet_sk_error_report
//	          telling whether the socket was notified
//	icmp out  cgroup_skb/egress: the kernel's own ICMP/ICMPv6 errors
//	drop      tp_btf/kfree_skb, reason names from the kernel's BTF enum skb_drop_reason
//
// On older kernels Open leaves out what the kernel cannot run and Plan says so, per class
// (HookChoice.Missing, or backend "none"): measured under vmtest, Debian's 6.12 cannot
// name the sending process in cgroup_skb; 6.1 also has no sock_send_length and
// sock_recv_length (no read events, no failed sends) and frees handled ICMPv6 errors
// with kfree_skb, which is recognised.
//
// Traffic of other network namespaces is seen from the root one: the tracepoints fire in
// every namespace, and cgroup membership does not depend on the namespace.
//
// Event fields beyond tracer.Event's own comments: a send event with HasRet (Ret < 0) is
// a failed sendmsg, not a datagram: it carries what the socket knows (its own address, the
// peer's if connected) and no payload; if the failure came after the datagram left the
// socket layer (ENOBUFS from a full queue, reported with IP_RECVERR), that datagram also
// has its own send event. For icmp events, Len is the UDP payload length the quoted
// datagram's header declares. A read's Src and Dst are the datagram's when the read was
// linked to it (HasQueueTime), otherwise what the socket knows.
//
// Known blind spots of this backend: a send that fails on an unconnected socket whose own
// port is not watched (sock_send_length does not know the destination) is not reported;
// a later IP fragment of a watched datagram is recognised only after its first fragment
// was dropped (only the first fragment carries the ports); a pid filter applies to events
// that run in the owning task (send, read), not to recv, icmp or drop.
package tracer
