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
// count grew), never hidden; LostSince says since when, the previous check. DeliveredUntil
// tells a consumer that judges timeouts up to when every event has been returned.
//
// Nothing is pinned: every program is attached through a BPF link owned by this process,
// so Close, or the process dying, detaches everything.
//
// # Hook plan
//
// Each event class has candidate backends, best first: fentry, kprobe, tracepoint. Open
// probes the first two (an empty program on udp_sendmsg), then checks each function the
// class needs (fentry: attaches an empty program to it; kprobe: looks it up in kallsyms); Plan says per class which backend serves it and why better ones were
// not used. Config.Backend forces one; Open then fails, saying why, if the kernel cannot
// run it (on the development kernel, 6.18 with lockdown, fentry attach fails with EPERM
// and kprobes are not built in).
//
//	send      cgroup_skb/egress on the cgroup v2 root (every backend: sender's pid/comm,
//	          tuple, payload), and for sends that failed, with their -errno:
//	          fentry      fexit/udp_sendmsg, fexit/udpv6_sendmsg
//	          kprobe      kprobe + kretprobe on the same functions
//	          tracepoint  tp_btf/sock_send_length
//	recv      cgroup_skb/ingress: datagrams reaching a socket, before its queue
//	read      the reader, and the time the datagram waited in the socket queue:
//	          fentry      fexit/udp_recvmsg, fexit/udpv6_recvmsg, and
//	                      fexit/__udp_enqueue_schedule_skb (datagrams the queue refused)
//	          kprobe      kprobe + kretprobe on the same functions
//	          tracepoint  tp_btf/sock_recv_length
//	icmp in   an ICMP/ICMPv6 error quoting a watched datagram, with tp_btf/inet_sk_error_report
//	          telling whether the socket was notified:
//	          fentry      fentry + fexit on icmp_rcv, icmpv6_rcv
//	          kprobe      kprobe + kretprobe on the same functions
//	          tracepoint  tp_btf/consume_skb in icmp_rcv/icmpv6_rcv
//	icmp out  cgroup_skb/egress: the kernel's own ICMP/ICMPv6 errors
//	drop      tp_btf/kfree_skb, reason names from the kernel's BTF enum skb_drop_reason;
//	          before Linux 5.17 (no reasons) tp_btf/udp_fail_queue_rcv_skb too, whose
//	          return code tells a full receive buffer's drop (Event.ReasonInferred)
//
// The function backends run only for UDP (the tracepoints fire for every socket), exist
// before Linux 6.3's sock_send_length and sock_recv_length, and see the destination a
// failed sendmsg named. The event stream is the same whichever backend produced it
// (TestBackendsGiveTheSameEvents compares two tracers field for field under make vmtest).
//
// On older kernels Open leaves out what the kernel cannot run and Plan says so, per class
// (HookChoice.Missing, or backend "none"): measured under vmtest, Debian's 6.12 cannot
// name the sending process in cgroup_skb; 6.1 also has no sock_send_length and
// sock_recv_length (no read events and no failed sends with the tracepoint backend: the
// fentry and kprobe backends restore them) and frees handled ICMPv6 errors with
// kfree_skb, which is recognised. Debian's 5.10 also has no drop reasons (drops carry
// their location; a full receive buffer's reason is inferred), no inet_sk_error_report,
// no socket cookie or BTF task helper in tracing programs (the cookie is read from the
// socket) and no atomic fetch in its verifier (the one use is rewritten into an add the
// programs do not run there); kernelPlans in the tests holds each kernel's plan.
//
// Traffic of other network namespaces is seen from the root one: the tracepoints fire in
// every namespace, and cgroup membership does not depend on the namespace.
//
// Event fields beyond tracer.Event's own comments: a send event with HasRet (Ret < 0) is
// a failed sendmsg, not a datagram: it carries what the socket knows (its own address, the
// peer's if connected; with the fentry and kprobe backends the destination the call
// named) and no payload; if the failure came after the datagram left the
// socket layer (ENOBUFS from a full queue, reported with IP_RECVERR), that datagram also
// has its own send event. For icmp events, Len is the UDP payload length the quoted
// datagram's header declares. A read's Src and Dst are the datagram's when the read was
// linked to it (HasQueueTime), otherwise what the socket knows.
//
// Known blind spots: with the tracepoint backend, a send that fails on an unconnected
// socket whose own port is not watched (sock_send_length does not know the destination)
// is not reported; with the kprobe backend, a recvmsg or sendmsg whose kretprobe the kernel
// missed (more threads inside the function at once than its kretprobe instances) gives no
// event; an IPv6-only socket's send to an IPv4-mapped address that fails with ENETUNREACH
// is not reported by the function backends (udpv6_sendmsg fails it before handing it to
// udp_sendmsg, where such sends are reported); a later IP fragment of a watched datagram is recognised only after its first fragment
// was dropped (only the first fragment carries the ports); a pid filter applies to events
// that run in the owning task (send, read), not to recv, icmp or drop.
package tracer
