// SPDX-License-Identifier: GPL-2.0
/*
 * discotrace kernel side: UDP datagrams of watched ports, at socket level, and what the
 * kernel does to them that the application never learns (ICMP errors, drops).
 *
 * Hook plan (backend "tracepoint": tracepoints and skb-level programs; see
 * /work/shared/docs/kernel-hooks.md for what each hook was measured to give):
 *   send      cgroup_skb/egress on the cgroup v2 root: every datagram a socket sends, in the
 *             sender's task (pid, comm), with tuple and payload
 *   send ret  tp_btf/sock_send_length: sends that failed (ret < 0), with what the socket knows
 *   recv      cgroup_skb/ingress on the cgroup v2 root: datagrams reaching a socket
 *   read      tp_btf/sock_recv_length: the reader's pid/comm; queue time from rx_queues
 *   icmp out  cgroup_skb/egress: the kernel's own ICMP/ICMPv6 errors quoting a watched port
 *   icmp in   tp_btf/consume_skb at the end of icmp_rcv/icmpv6_rcv, plus
 *             tp_btf/inet_sk_error_report to tell whether the socket was notified
 *   drop      tp_btf/kfree_skb with the kernel's drop reason; before Linux 5.17 (no reason)
 *             tp_btf/udp_fail_queue_rcv_skb tells a full receive buffer's
 *
 * Backends "fentry" and "kprobe" (at the end of this file) serve send ret, read and icmp in
 * from the kernel functions themselves (udp_sendmsg, udp_recvmsg and their IPv6 twins,
 * __udp_enqueue_schedule_skb, icmp_rcv and icmpv6_rcv) where the kernel allows; user space
 * loads one backend per class.
 *
 * Every program leaves at once for traffic of unwatched ports: one bitmap lookup per port.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>
#include "discotrace.h"

char LICENSE[] SEC("license") = "GPL";

/* Keep the exported types in BTF so bpf2go can generate their Go twins. */
const struct dt_event *unused_event __attribute__((unused));
const enum dt_kind *unused_kind __attribute__((unused));
const enum dt_flag *unused_flag __attribute__((unused));
const enum dt_icmp_dir *unused_icmp_dir __attribute__((unused));
const enum dt_limits *unused_limits __attribute__((unused));
const enum dt_inferred_reason *unused_inferred_reason __attribute__((unused));

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define IPPROTO_ICMP_ 1
#define IPPROTO_UDP_ 17
#define IPPROTO_ICMPV6_ 58
#define IPV6_FRAGMENT_HDR 44
#define MSG_PEEK_ 2
#define MSG_ERRQUEUE_ 0x2000
#define AF_INET_ 2
#define AF_INET6_ 10

/* ---- configuration, fixed at load time (the verifier treats these as constants) ---- */

const volatile __u32 cfg_snap_len = DT_MAX_SNAP_LEN;
const volatile __u32 cfg_netns = 0; /* only this network namespace inode, 0 = all */
const volatile __u32 cfg_pid = 0;   /* only this tgid for task events, 0 = all */
/* The smallest and largest watched port: ports outside are not looked up in the bitmap,
 * so most unwatched packets leave on two compares with constants. */
const volatile __u16 cfg_port_min = 0, cfg_port_max = 0xffff;
/* Kernel text ranges [lo, hi) from /proc/kallsyms, 0 when unknown. */
const volatile __u64 cfg_icmp_rcv_lo = 0, cfg_icmp_rcv_hi = 0;
const volatile __u64 cfg_icmpv6_rcv_lo = 0, cfg_icmpv6_rcv_hi = 0;
/* Frees at socket close (a queued datagram nobody read): not network drops. */
const volatile __u64 cfg_close_free_lo[2] = {}, cfg_close_free_hi[2] = {};
/* udp_recvmsg and udpv6_recvmsg: a free there is a datagram the reader's task took off the
 * socket's queue and dropped (checksum checked when read), with no socket or device. */
const volatile __u64 cfg_recvmsg_lo[2] = {}, cfg_recvmsg_hi[2] = {};
/* Tracepoint arguments newer kernels added (user space reads the kernel's BTF). */
const volatile bool cfg_consume_skb_has_location = true;
const volatile bool cfg_kfree_skb_has_rx_sk = true;
/* kfree_skb's reason argument (Linux 5.17); without it a drop carries its location, and a
 * reason only where dt_fail_queue infers one (cfg_infer_queue_reason). */
const volatile bool cfg_kfree_skb_has_reason = true;
/* dt_fail_queue runs: drops by udp_queue_rcv_one_skb and udpv6_queue_rcv_one_skb (and the
 * __udp*_queue_rcv_skb they call, where not inlined), at these text ranges, wait for it. */
const volatile bool cfg_infer_queue_reason = false;
const volatile __u64 cfg_queue_rcv_lo[4] = {}, cfg_queue_rcv_hi[4] = {};
/* Helpers cgroup_skb programs may call on this kernel (task helpers since Linux 6.x):
 * without them sends carry no process and the netns of send/recv is unknown (0). */
const volatile bool cfg_skb_task_helpers = true;
const volatile bool cfg_skb_probe_read = true;
/* dt_error_report runs (inet_sk_error_report exists): icmp in can say "notified". */
const volatile bool cfg_error_reports_seen = true;
/* bpf_get_current_task_btf and bpf_task_pt_regs (Linux 5.15): a failed send carries what
 * its system call asked to send. */
const volatile bool cfg_send_call_regs = true;
/* The tracepoint backend serves icmp in: the ICMP packet's free (consume_skb, or on older
 * kernels kfree_skb in icmpv6_rcv) reports it. Off when fexit or a kretprobe on the UDP
 * error handlers does, so that each error is reported once. */
const volatile bool cfg_icmp_in_by_free = true;
/* The read class's function backend (dt_enqueue_*) takes datagrams the socket queue
 * refused out of rx_queues; otherwise dt_drop does, where kfree_skb names the socket. */
const volatile bool cfg_unpush_by_enqueue = false;
/* udp_recvmsg and udpv6_recvmsg take (sk, msg, len, noblock, flags, addr_len) before
 * Linux 5.19, (sk, msg, len, flags, addr_len) since. */
const volatile bool cfg_recvmsg_has_noblock = false;
/* Tracing programs may call bpf_get_current_task_btf (Linux 5.11). */
const volatile bool cfg_task_btf = true;
/* The verifier knows atomic fetch operations (Linux 5.12). */
const volatile bool cfg_atomic_fetch = true;
/* Tracing programs may call bpf_get_socket_cookie (Linux 5.12); before, they read the
 * cookie the socket has (cgroup_skb's calls made it). */
const volatile bool cfg_tracing_socket_cookie = true;
/* enum skb_drop_reason values of drops that happen after cgroup ingress saw the datagram
 * (read from the kernel's BTF by user space; ~0 when the kernel lacks one). */
const volatile __u32 cfg_reason_not_specified = ~0U;
const volatile __u32 cfg_reason_rcvbuff = ~0U;
const volatile __u32 cfg_reason_proto_mem = ~0U;
const volatile __u32 cfg_reason_socket_filter = ~0U;

/* ---- maps ---- */

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 << 20); /* set by user space from Config.RingSize */
} events SEC(".maps");

/* Events that did not fit in the ring buffer, per CPU: reported as "lost", never hidden. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} lost_events SEC(".maps");

/*
 * 1 while the reader sleeps until woken, 0 while it polls the ring on its own (it does so
 * as long as each poll finds records). Only a sleeping reader is woken, once: a wakeup is
 * an interrupt and a task switch, which cost the traced CPU more than writing the record
 * when it came every few records. User space maps it to store its side without a syscall.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, __u32);
} reader_sleeping SEC(".maps");

/* A slot of this CPU's own for the atomic operation that orders memory in submit. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} fence_slot SEC(".maps");

/* Watched UDP ports as a bitmap: bit (port & 63) of word (port >> 6). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 65536 / 64);
	__type(key, __u32);
	__type(value, __u64);
} watched_ports SEC(".maps");

/*
 * Datagrams waiting in a watched socket's receive queue, oldest first, keyed by socket
 * cookie. This is how a read is linked to its recv: the read hooks (sock_recv_length,
 * udp_recvmsg's return) see no skb, but UDP queues are FIFO, so the n-th datagram cgroup
 * ingress hands to a socket is the n-th one its reader gets. Ingress appends; a drop
 * after ingress takes the newest back (the queue's refusal, receive buffer or protocol
 * memory full: __udp_enqueue_schedule_skb's return with the function backends, else
 * kfree_skb with rx_sk; a socket filter's: kfree_skb with rx_sk); a read pops the oldest (a MSG_PEEK read looks without popping). When more datagrams queue than the ring
 * holds, the queue is marked overflowed and reads carry no queue time until the socket's
 * queue is seen empty again: a queue time is either right or absent.
 */
#define RXQ_SLOTS 256
struct rxq_slot {
	__u64 time_ns;
	__u8 saddr[16];
	__u8 daddr[16];
	__u16 sport;
	__u16 dport;
	__u16 len;
	__u8 family;
	__u8 _pad;
};

struct rx_queue {
	__u32 head; /* next slot to read */
	__u32 tail; /* next slot to fill */
	__u32 overflow;
	__u32 _pad;
	struct rxq_slot slot[RXQ_SLOTS];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 256);
	__type(key, __u64);
	__type(value, struct rx_queue);
} rx_queues SEC(".maps");

/* All zero: the initial value of a new rx_queues entry (too big for the BPF stack). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct rx_queue);
} rx_queue_zero SEC(".maps");

/*
 * The last error report to a watched UDP socket on this CPU. The kernel handles an
 * incoming ICMP error synchronously in icmp_rcv: __udp4_lib_err reports it to the socket
 * (sk_error_report) only for connected or IP_RECVERR sockets, then icmp_rcv frees the
 * ICMP packet (consume_skb). The consume_skb program reads this to tell "notified".
 */
struct error_report {
	__u64 time_ns;
	__u64 cookie;
	__u16 lport;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct error_report);
} last_error_report SEC(".maps");

/* With the tracepoint backend, a report older than this when the ICMP packet is freed
 * belongs to something else (it must also name the quoted source port). Natively the two
 * are microseconds apart; under emulation (qemu TCG) on a loaded host, tens of
 * milliseconds were seen. The function backends need no window: they clear the slot when
 * the ICMP packet's handling begins. */
#define ERROR_REPORT_MAX_AGE_NS 100000000ULL

/*
 * IP fragments of watched datagrams that the kernel dropped: only the first fragment
 * carries the UDP ports, so later fragments of the same datagram (same addresses and IP
 * id) are recognised through this map. On reassembly timeout the kernel frees the first
 * fragment before the others (ip_expire, then inet_frag_rbtree_purge).
 */
struct frag_key {
	__u8 saddr[16];
	__u8 daddr[16];
	__u32 id;
	__u32 family;
};

/* Where the first fragment was: later fragments freed by inet_frag_rbtree_purge often
 * have no device (and never a socket), so they take the netns and device from here. */
struct frag_origin {
	__u32 netns;
	__u32 ifindex;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1024);
	__type(key, struct frag_key);
	__type(value, struct frag_origin);
} watched_frags SEC(".maps");

/*
 * Watched datagrams a thread's recvmsg took off a socket queue and dropped (checksum
 * checked when read), keyed by pid_tgid. kfree_skb there has no socket, so it cannot take
 * them out of rx_queues itself; the read hook at the end of the same recvmsg does (even
 * when recvmsg fails, as it does with -EAGAIN after such a drop). The dropped datagrams
 * are consecutive in the queue (udp_recvmsg retries with the next one), the first is
 * identified by its tuple and length.
 */
struct read_drops {
	__u32 count;
	__u16 sport;
	__u16 len;
	__u8 saddr[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1024);
	__type(key, __u64);
	__type(value, struct read_drops);
} read_drops SEC(".maps");

/* ---- helpers ---- */

static __always_inline bool port_watched(__u16 port)
{
	if (port < cfg_port_min || port > cfg_port_max)
		return false;
	__u32 word = port >> 6;
	__u64 *bits = bpf_map_lookup_elem(&watched_ports, &word);

	return bits && ((*bits >> (port & 63)) & 1);
}

static __always_inline bool tuple_watched(__u16 sport, __u16 dport)
{
	return port_watched(sport) || port_watched(dport);
}

static __always_inline void count_lost(void)
{
	__u32 zero = 0;
	__u64 *n = bpf_map_lookup_elem(&lost_events, &zero);

	if (n)
		__sync_fetch_and_add(n, 1);
}

static __always_inline void *reserve(__u32 size)
{
	void *e = bpf_ringbuf_reserve(&events, size, 0);

	if (!e)
		count_lost();
	return e;
}

/*
 * Submits a record, waking the reader only if it sleeps. The reader stores 1 in
 * reader_sleeping and then loads the ring's producer position; here the reservation has
 * stored the producer position and the flag is loaded after it. With a full barrier on
 * both sides (Dekker's), either the reader sees this record and stays awake or this sees
 * the flag and wakes it: no record waits for the reader's next timeout. The barrier is an
 * atomic fetch-add on a per-CPU slot (BPF has no fence; a fetch is fully ordered). Before
 * Linux 5.12 the fetch becomes a plain atomic add, still a full barrier on x86 (lock
 * prefix) but not on arm64, where a wakeup can then come only at the reader's timeout.
 */
static __always_inline void submit(void *e)
{
	__u32 zero = 0;
	__u64 *fence = bpf_map_lookup_elem(&fence_slot, &zero);
	__u32 *sleeping = bpf_map_lookup_elem(&reader_sleeping, &zero);
	__u64 flags = BPF_RB_NO_WAKEUP;

	/* The result is used so that clang emits the fetch form. */
	if (fence)
		asm volatile("" : : "r"(__sync_fetch_and_add(fence, 1)) : "memory");
	/* Two CPUs may both see 1 and both wake it: a spare wakeup, never a missed one. */
	if (sleeping && *sleeping) {
		*sleeping = 0;
		flags = BPF_RB_FORCE_WAKEUP;
	}
	bpf_ringbuf_submit(e, flags);
}

static __always_inline void zero_header(struct dt_event *e)
{
	__builtin_memset(e, 0, sizeof(*e));
}

static __always_inline void set_task(struct dt_event *e)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();

	e->pid = pid_tgid >> 32;
	e->tid = (__u32)pid_tgid;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	e->flags |= DT_FLAG_PROC;
}

static __always_inline bool pid_passes(void)
{
	return !cfg_pid || (bpf_get_current_pid_tgid() >> 32) == cfg_pid;
}

/* The netns of a socket known only by its address (cgroup_skb programs). */
static __always_inline __u32 sock_netns(const struct sock *sk)
{
	return BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
}

/* The netns of a socket the tracing program got typed (BTF): direct loads, no helper. */
static __always_inline __u32 sock_netns_btf(const struct sock *sk)
{
	return sk->__sk_common.skc_net.net->ns.inum;
}

/*
 * The kernel address of a cgroup_skb program's socket, as a plain number, so that
 * BPF_CORE_READ can follow its fields (the verifier allows no arithmetic on a bpf_sock).
 */
static __always_inline const struct sock *sock_address(struct bpf_sock *bsk)
{
	struct bpf_sock *volatile spilled = bsk;
	__u64 addr = 0;

	bpf_probe_read_kernel(&addr, sizeof(addr), (const void *)&spilled);
	return (const struct sock *)addr;
}

/* The network namespace of a cgroup_skb packet's socket, or 0 where the kernel cannot
 * read it from this program type (cfg_skb_probe_read off) or there is no socket. */
static __always_inline __u32 skb_sock_netns(struct __sk_buff *skb)
{
	struct bpf_sock *bsk = skb->sk;

	if (!bsk || !cfg_skb_probe_read)
		return 0;
	return sock_netns(sock_address(bsk));
}

/* Bytes of a packet whose IP header is at offset 0: from an skb (cgroup_skb) or from
 * kernel memory at ip (tracing programs). from_skb is a constant after inlining. */
static __always_inline int load(bool from_skb, void *ctx, const void *ip, __u32 off, void *dst,
				__u32 len)
{
	if (from_skb)
		return bpf_skb_load_bytes((struct __sk_buff *)ctx, off, dst, len);
	return bpf_probe_read_kernel(dst, len, ip + off);
}

static __always_inline __u16 be16_at(const __u8 *b)
{
	return ((__u16)b[0] << 8) | b[1];
}

/* What the IP header says about a packet. */
struct ip_info {
	__u8 family; /* 4 or 6, 0 when not IP */
	__u8 proto;  /* transport protocol, after an IPv6 fragment header */
	bool fragment;
	bool first_fragment;
	__u32 frag_id;
	__u32 l4_off; /* offset of the transport header from the IP header */
	__u8 saddr[16];
	__u8 daddr[16];
};

/* Parses the IP header at offset 0. Returns 0 on success. */
static __always_inline int parse_ip(bool from_skb, void *ctx, const void *ip, __u16 l3proto,
				    struct ip_info *info)
{
	__u8 b[40];

	if (l3proto == bpf_htons(ETH_P_IP)) {
		if (load(from_skb, ctx, ip, 0, b, 20))
			return -1;
		if ((b[0] >> 4) != 4)
			return -1;
		__u16 frag = be16_at(&b[6]);

		info->family = 4;
		info->proto = b[9];
		info->l4_off = (b[0] & 0xf) * 4;
		info->fragment = (frag & 0x3fff) != 0; /* MF or an offset */
		info->first_fragment = (frag & 0x1fff) == 0;
		info->frag_id = be16_at(&b[4]);
		__builtin_memcpy(info->saddr, &b[12], 4);
		__builtin_memcpy(info->daddr, &b[16], 4);
		return info->l4_off >= 20 ? 0 : -1;
	}
	if (l3proto == bpf_htons(ETH_P_IPV6)) {
		if (load(from_skb, ctx, ip, 0, b, 40))
			return -1;
		if ((b[0] >> 4) != 6)
			return -1;
		info->family = 6;
		info->proto = b[6];
		info->l4_off = 40;
		info->first_fragment = true;
		__builtin_memcpy(info->saddr, &b[8], 16);
		__builtin_memcpy(info->daddr, &b[24], 16);
		if (info->proto == IPV6_FRAGMENT_HDR) {
			__u8 fh[8];

			if (load(from_skb, ctx, ip, 40, fh, 8))
				return -1;
			info->proto = fh[0];
			info->l4_off = 48;
			info->fragment = true;
			info->first_fragment = (be16_at(&fh[2]) & 0xfff8) == 0;
			info->frag_id = ((__u32)fh[4] << 24) | ((__u32)fh[5] << 16) |
					((__u32)fh[6] << 8) | fh[7];
		}
		return 0;
	}
	return -1;
}

/* The UDP header of a packet parse_ip found to be a (first fragment of a) UDP datagram. */
struct udp_info {
	__u16 sport;
	__u16 dport;
	__u16 len; /* payload length, from the UDP header */
};

static __always_inline int parse_udp(bool from_skb, void *ctx, const void *ip,
				     const struct ip_info *info, struct udp_info *udp)
{
	__u8 b[8];

	if (load(from_skb, ctx, ip, info->l4_off, b, 8))
		return -1;
	udp->sport = be16_at(&b[0]);
	udp->dport = be16_at(&b[2]);
	__u16 ulen = be16_at(&b[4]);
	udp->len = ulen >= 8 ? ulen - 8 : 0;
	return 0;
}

/* An ICMP/ICMPv6 error and the UDP datagram it quotes. */
struct icmp_info {
	__u8 type;
	__u8 code;
	struct ip_info quoted;
	struct udp_info quoted_udp;
};

static __always_inline bool is_icmp_error(__u8 family, __u8 type)
{
	if (family == 4) /* unreachable, source quench, time exceeded, parameter problem */
		return type == 3 || type == 4 || type == 11 || type == 12;
	/* unreachable, packet too big, time exceeded, parameter problem */
	return type >= 1 && type <= 4;
}

/* Parses an ICMP error packet whose outer header parse_ip has read. Returns 0 when it
 * quotes a UDP datagram of a watched port. */
static __always_inline int parse_icmp_error(bool from_skb, void *ctx, const void *ip,
					    const struct ip_info *outer, struct icmp_info *icmp)
{
	__u8 b[8];

	if (outer->proto != (outer->family == 4 ? IPPROTO_ICMP_ : IPPROTO_ICMPV6_) ||
	    !outer->first_fragment)
		return -1;
	if (load(from_skb, ctx, ip, outer->l4_off, b, 2))
		return -1;
	icmp->type = b[0];
	icmp->code = b[1];
	if (!is_icmp_error(outer->family, icmp->type))
		return -1;
	/* The quoted datagram starts after the 8-byte ICMP header; parse it as a packet of
	 * its own by moving the base past the outer headers. */
	__u32 qoff = outer->l4_off + 8;
	__u8 q[40];

	if (outer->family == 4) {
		if (load(from_skb, ctx, ip, qoff, q, 20) || (q[0] >> 4) != 4 || q[9] != IPPROTO_UDP_)
			return -1;
		if (be16_at(&q[6]) & 0x1fff) /* a later fragment: no ports quoted */
			return -1;
		icmp->quoted.family = 4;
		icmp->quoted.l4_off = qoff + (q[0] & 0xf) * 4;
		__builtin_memcpy(icmp->quoted.saddr, &q[12], 4);
		__builtin_memcpy(icmp->quoted.daddr, &q[16], 4);
	} else {
		if (load(from_skb, ctx, ip, qoff, q, 40) || (q[0] >> 4) != 6)
			return -1;
		__u32 l4 = qoff + 40;

		if (q[6] == IPV6_FRAGMENT_HDR) {
			if (load(from_skb, ctx, ip, l4, b, 8) || b[0] != IPPROTO_UDP_ ||
			    (be16_at(&b[2]) & 0xfff8))
				return -1;
			l4 += 8;
		} else if (q[6] != IPPROTO_UDP_) {
			return -1;
		}
		icmp->quoted.family = 6;
		icmp->quoted.l4_off = l4;
		__builtin_memcpy(icmp->quoted.saddr, &q[8], 16);
		__builtin_memcpy(icmp->quoted.daddr, &q[24], 16);
	}
	if (parse_udp(from_skb, ctx, ip, &icmp->quoted, &icmp->quoted_udp))
		return -1;
	return tuple_watched(icmp->quoted_udp.sport, icmp->quoted_udp.dport) ? 0 : -1;
}

static __always_inline void copy_addrs(struct dt_event *e, const struct ip_info *info)
{
	e->family = info->family;
	__builtin_memcpy(e->saddr, info->saddr, 16);
	__builtin_memcpy(e->daddr, info->daddr, 16);
}

static __always_inline void fill_icmp(struct dt_event *e, const struct ip_info *outer,
				      const struct icmp_info *icmp, __u8 dir)
{
	e->kind = DT_KIND_ICMP;
	e->time_ns = bpf_ktime_get_ns();
	copy_addrs(e, outer);
	e->icmp_type = icmp->type;
	e->icmp_code = icmp->code;
	e->icmp_dir = dir;
	e->quoted_family = icmp->quoted.family;
	__builtin_memcpy(e->quoted_saddr, icmp->quoted.saddr, 16);
	__builtin_memcpy(e->quoted_daddr, icmp->quoted.daddr, 16);
	e->quoted_sport = icmp->quoted_udp.sport;
	e->quoted_dport = icmp->quoted_udp.dport;
	e->len = icmp->quoted_udp.len;
}

/* Reserves and fills an icmp event, or returns NULL when the netns filter excludes it or
 * the ring buffer is full (counted as lost). The caller submits it. */
static __always_inline struct dt_event *reserve_icmp(const struct ip_info *outer,
						     const struct icmp_info *icmp, __u8 dir,
						     __u32 netns, __u32 ifindex)
{
	if (cfg_netns && netns != cfg_netns)
		return NULL;
	struct dt_event *e = reserve(sizeof(*e));

	if (!e)
		return NULL;
	zero_header(e);
	fill_icmp(e, outer, icmp, dir);
	e->netns = netns;
	e->ifindex = ifindex;
	return e;
}

/* ---- send, recv, icmp out: cgroup_skb on the cgroup v2 root ---- */

/* Emits a send or recv event with up to capacity payload bytes. The ring buffer needs a
 * constant size per reservation, so records come in a few size classes. */
static __always_inline void emit_datagram_class(struct __sk_buff *skb, const struct ip_info *ip,
						const struct udp_info *udp, __u8 kind,
						__u32 netns, __u64 now, __u64 cookie, __u32 cap,
						const __u32 capacity)
{
	struct dt_event *e = reserve(sizeof(struct dt_event) + capacity);

	if (!e)
		return;
	zero_header(e);
	e->kind = kind;
	e->time_ns = now;
	e->cookie = cookie;
	e->cgroup_id = bpf_skb_cgroup_id(skb);
	e->netns = netns;
	e->ifindex = skb->ifindex;
	copy_addrs(e, ip);
	e->sport = udp->sport;
	e->dport = udp->dport;
	e->len = udp->len;
	if (kind == DT_KIND_SEND && cfg_skb_task_helpers)
		set_task(e);
	/* Hide what clang knows of cap (it would drop the clamp below as redundant), then
	 * spell the bounds so that older verifiers (Linux 6.1), which do not learn n >= 1
	 * from a != 0 test, can see 1 <= n <= capacity: n == cap for 1 <= cap <= 2048. */
	asm volatile("" : "+r"(cap));
	if (cap == 0)
		goto out;
	__u64 n = ((cap - 1) & 0x7ff) + 1;

	asm volatile("" : "+r"(n)); /* compare n itself, not cap - 1 (same reason) */
	if (n > capacity)
		n = capacity;
	if (bpf_skb_load_bytes(skb, ip->l4_off + 8, e->payload, n) == 0)
		e->cap_len = n;
out:
	submit(e);
}

/* now and cookie are the event's time and socket cookie (ingress also queues them). */
static __always_inline void emit_datagram(struct __sk_buff *skb, const struct ip_info *ip,
					  const struct udp_info *udp, __u8 kind, __u32 netns,
					  __u64 now, __u64 cookie)
{
	__u32 cap = udp->len;

	if (cap > cfg_snap_len)
		cap = cfg_snap_len;
	if (cap <= 64)
		emit_datagram_class(skb, ip, udp, kind, netns, now, cookie, cap, 64);
	else if (cap <= 256)
		emit_datagram_class(skb, ip, udp, kind, netns, now, cookie, cap, 256);
	else if (cap <= 640)
		emit_datagram_class(skb, ip, udp, kind, netns, now, cookie, cap, 640);
	else
		emit_datagram_class(skb, ip, udp, kind, netns, now, cookie, cap, DT_MAX_SNAP_LEN);
}

/* Appends a datagram a socket is about to queue to that socket's rx_queues entry. */
static __always_inline void rxq_push(__u64 cookie, __u64 now, const struct ip_info *ip,
				     const struct udp_info *udp)
{
	struct rx_queue *q = bpf_map_lookup_elem(&rx_queues, &cookie);

	if (!q) {
		__u32 zero = 0;
		struct rx_queue *init = bpf_map_lookup_elem(&rx_queue_zero, &zero);

		if (!init)
			return;
		bpf_map_update_elem(&rx_queues, &cookie, init, BPF_NOEXIST);
		q = bpf_map_lookup_elem(&rx_queues, &cookie);
		if (!q)
			return;
	}
	if (q->overflow)
		return;
	__u32 tail;

	if (cfg_atomic_fetch) {
		tail = __sync_fetch_and_add(&q->tail, 1);
	} else {
		/* Before Linux 5.12 the verifier knows no atomic fetch: user space rewrites the
		 * instruction above (never run there) into a plain atomic add. Two ingresses
		 * to one socket at the same instant on two CPUs may then share a slot. */
		tail = q->tail;
		__sync_fetch_and_add(&q->tail, 1);
	}

	if (tail - q->head >= RXQ_SLOTS) {
		q->overflow = 1;
		return;
	}
	struct rxq_slot *s = &q->slot[tail & (RXQ_SLOTS - 1)];

	s->time_ns = now;
	__builtin_memcpy(s->saddr, ip->saddr, 16);
	__builtin_memcpy(s->daddr, ip->daddr, 16);
	s->sport = udp->sport;
	s->dport = udp->dport;
	s->len = udp->len;
	s->family = ip->family;
}

/* What the fast look at a cgroup_skb packet found. */
enum skb_class {
	SKB_OTHER,   /* not ours: leave */
	SKB_UDP,     /* a UDP datagram of a watched port, headers parsed into ip and udp */
	SKB_PARSE,   /* may concern a watched port: needs the full parse */
};

/*
 * The fast exit for the packets these programs see most, all of them not ours: reads the
 * IP and UDP headers in place (no helper call) and says whether the packet may concern a
 * watched port; for the common watched case (IPv4 without options, IPv6 without extension
 * headers, headers in the linear data) it also fills ip and udp, so that no helper copies
 * the headers again. Packets whose headers are not in the linear data, IP options, IPv6
 * extension headers and ICMP errors (egress) go to the full parse.
 */
static __always_inline enum skb_class classify_skb(struct __sk_buff *skb, bool egress,
						   struct ip_info *ip, struct udp_info *udp)
{
	const __u8 *b = (const __u8 *)(long)skb->data;
	const __u8 *end = (const __u8 *)(long)skb->data_end;
	__u16 sport, dport, ulen;

	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		if (b + 28 > end)
			return SKB_PARSE;
		if (b[9] == IPPROTO_UDP_ && b[0] == 0x45 && !(be16_at(&b[6]) & 0x1fff)) {
			sport = be16_at(&b[20]);
			dport = be16_at(&b[22]);
			if (!tuple_watched(sport, dport))
				return SKB_OTHER;
			ip->family = 4;
			ip->proto = IPPROTO_UDP_;
			ip->l4_off = 20;
			ip->fragment = be16_at(&b[6]) & 0x2000; /* MF: the first of several */
			ip->first_fragment = true;
			ip->frag_id = be16_at(&b[4]);
			__builtin_memcpy(ip->saddr, &b[12], 4);
			__builtin_memcpy(ip->daddr, &b[16], 4);
			ulen = be16_at(&b[24]);
			goto udp;
		}
		return b[0] != 0x45 || (egress && b[9] == IPPROTO_ICMP_) ? SKB_PARSE : SKB_OTHER;
	}
	if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		if (b + 48 > end)
			return SKB_PARSE;
		if (b[6] == IPPROTO_UDP_ && (b[0] >> 4) == 6) {
			sport = be16_at(&b[40]);
			dport = be16_at(&b[42]);
			if (!tuple_watched(sport, dport))
				return SKB_OTHER;
			ip->family = 6;
			ip->proto = IPPROTO_UDP_;
			ip->l4_off = 40;
			ip->first_fragment = true;
			__builtin_memcpy(ip->saddr, &b[8], 16);
			__builtin_memcpy(ip->daddr, &b[24], 16);
			ulen = be16_at(&b[44]);
			goto udp;
		}
		return b[6] == IPV6_FRAGMENT_HDR || b[6] == IPPROTO_UDP_ ||
		       (egress && b[6] == IPPROTO_ICMPV6_) ? SKB_PARSE : SKB_OTHER;
	}
	return SKB_OTHER;
udp:
	udp->sport = sport;
	udp->dport = dport;
	udp->len = ulen >= 8 ? ulen - 8 : 0;
	return SKB_UDP;
}

static __always_inline int handle_skb(struct __sk_buff *skb, bool egress)
{
	struct ip_info ip = {};
	struct udp_info udp = {};
	enum skb_class class = classify_skb(skb, egress, &ip, &udp);

	if (class == SKB_OTHER)
		return 1;
	if (class == SKB_PARSE && parse_ip(true, skb, NULL, skb->protocol, &ip))
		return 1;
	if (ip.proto == IPPROTO_UDP_) {
		if (class == SKB_PARSE &&
		    (!ip.first_fragment || parse_udp(true, skb, NULL, &ip, &udp) ||
		     !tuple_watched(udp.sport, udp.dport)))
			return 1;
		if (egress && cfg_skb_task_helpers && !pid_passes())
			return 1;
		__u32 netns = skb_sock_netns(skb);

		if (cfg_netns && netns != cfg_netns)
			return 1;
		__u64 now = bpf_ktime_get_ns(), cookie = bpf_get_socket_cookie(skb);

		emit_datagram(skb, &ip, &udp, egress ? DT_KIND_SEND : DT_KIND_RECV, netns, now, cookie);
		if (!egress)
			rxq_push(cookie, now, &ip, &udp);
		return 1;
	}
	if (!egress)
		return 1;
	/* The kernel's own ICMP errors leave through its control socket: icmp out. */
	struct icmp_info icmp = {};

	if (parse_icmp_error(true, skb, NULL, &ip, &icmp))
		return 1;
	struct dt_event *e = reserve_icmp(&ip, &icmp, DT_ICMP_OUT, skb_sock_netns(skb), skb->ifindex);

	if (e)
		submit(e);
	return 1;
}

SEC("cgroup_skb/egress")
int dt_egress(struct __sk_buff *skb)
{
	return handle_skb(skb, true);
}

SEC("cgroup_skb/ingress")
int dt_ingress(struct __sk_buff *skb)
{
	return handle_skb(skb, false);
}

/* ---- socket level: shared by the tracepoint, fentry and kprobe backends ---- */

/*
 * A field of a kernel object: a direct load where the program got the pointer typed (BTF:
 * tp_btf, fentry/fexit), a CO-RE probe read where it is a plain number (kprobes). btf is a
 * constant after inlining, so each program keeps one of the two.
 */
#define KREAD(btf, p, field) ((btf) ? (p)->field : BPF_CORE_READ(p, field))

static __always_inline bool udp_sock_watched(const struct sock *sk, bool btf, __u16 *lport,
					     __u16 *rport)
{
	/* Ports first: they share the socket's first cache line, sk_protocol does not. */
	*lport = KREAD(btf, sk, __sk_common.skc_num);
	*rport = bpf_ntohs(KREAD(btf, sk, __sk_common.skc_dport));
	return tuple_watched(*lport, *rport) && KREAD(btf, sk, sk_protocol) == IPPROTO_UDP_;
}

/* The socket's cookie. Kprobe programs may not call bpf_get_socket_cookie; they read the
 * cookie the kernel keeps once anyone asked for it (cgroup ingress does, for every socket
 * a watched datagram reached), else 0. */
static __always_inline __u64 sock_cookie(const struct sock *sk, bool btf)
{
	if (btf && cfg_tracing_socket_cookie)
		return bpf_get_socket_cookie((struct sock *)sk);
	return BPF_CORE_READ(sk, __sk_common.skc_cookie.counter);
}

/* The addresses a socket knows: local as dst (a read) or src (a send), peer if connected. */
static __always_inline void sock_addrs(struct dt_event *e, const struct sock *sk, bool local_is_src,
				       bool btf)
{
	__u8 *local = local_is_src ? e->saddr : e->daddr;
	__u8 *peer = local_is_src ? e->daddr : e->saddr;

	if (KREAD(btf, sk, __sk_common.skc_family) == AF_INET6_) {
		e->family = 6;
		bpf_core_read(local, 16, &sk->__sk_common.skc_v6_rcv_saddr);
		bpf_core_read(peer, 16, &sk->__sk_common.skc_v6_daddr);
	} else {
		e->family = 4;
		bpf_core_read(local, 4, &sk->__sk_common.skc_rcv_saddr);
		bpf_core_read(peer, 4, &sk->__sk_common.skc_daddr);
	}
}

/* Reserves an event of a socket hook that runs in the owning task (send result, read),
 * with what all of them carry; NULL when the filters drop it or the ring is full. */
static __always_inline struct dt_event *task_sock_event(const struct sock *sk, bool btf, __u8 kind,
							 __u64 cookie, __u64 now, const __u32 capacity)
{
	if (!pid_passes())
		return NULL;
	__u32 netns = btf ? sock_netns_btf(sk) : sock_netns(sk);

	if (cfg_netns && netns != cfg_netns)
		return NULL;
	struct dt_event *e = reserve(sizeof(*e) + capacity);

	if (!e)
		return NULL;
	zero_header(e);
	e->kind = kind;
	e->time_ns = now;
	e->cookie = cookie;
	e->cgroup_id = bpf_get_current_cgroup_id();
	e->netns = netns;
	set_task(e);
	return e;
}

/* The destination a sendmsg named (msg_name): a sockaddr_in or sockaddr_in6 in kernel
 * memory (the system call copied it there). */
struct named_dest {
	__u16 family; /* AF_INET_ or AF_INET6_; 0 when the call named none (connected socket) */
	__u16 port;   /* host order */
	__u8 addr[16];
};

/* Reads the sockaddr_in or sockaddr_in6 at name, in user memory or the kernel's. */
static __always_inline void read_dest(const void *name, bool user, struct named_dest *d)
{
	struct {
		__u16 family;
		__u16 port;
		__u8 v4[4]; /* sockaddr_in's address; sockaddr_in6's flowinfo */
		__u8 v6[16];
	} sa = {};

	if (!name)
		return;
	if (user ? bpf_probe_read_user(&sa, sizeof(sa), name) : bpf_probe_read_kernel(&sa, sizeof(sa), name))
		return;
	if (sa.family == AF_INET_)
		__builtin_memcpy(d->addr, sa.v4, 4);
	else if (sa.family == AF_INET6_)
		__builtin_memcpy(d->addr, sa.v6, 16);
	else
		return;
	d->family = sa.family;
	d->port = bpf_ntohs(sa.port);
}

static __always_inline void msg_dest(const struct msghdr *msg, bool btf, struct named_dest *d)
{
	read_dest(msg ? KREAD(btf, msg, msg_name) : NULL, false, d);
}

/*
 * What the send system call the current task is in asked to send, from the user registers
 * it entered with: sendto's buffer and address, write's buffer (a connected socket), or
 * sendmsg's first iovec and msg_name (a datagram in several iovecs gives its first part).
 * Other ways in (sendmmsg, writev, io_uring) are not read. One object serves x86-64 and arm64: CO-RE picks the registers.
 */
struct send_call {
	const void *buf; /* user memory */
	__u64 len;	 /* the datagram's length */
	const void *name;
};

/* Registers, whatever the architecture: CO-RE picks the running kernel's layout of struct
 * pt_regs (x86-64: di, si, dx, cx, r8, ax, orig_ax; arm64: regs[0..], syscallno), so the
 * one object serves both: the kprobe backend's arguments, and the system call's. */
struct pt_regs___x86 {
	unsigned long di, si, dx, cx, r8, ax, orig_ax;
} __attribute__((preserve_access_index));

struct pt_regs___arm64 {
	unsigned long regs[31];
	int syscallno;
} __attribute__((preserve_access_index));

struct user_msghdr_ { /* the system call ABI's struct msghdr */
	void *name;
	int namelen;
	void *iov;
	__u64 iovlen;
};

struct user_iovec_ {
	void *base;
	__u64 len;
};

#define SEND_CALL_MAX_IOV 8

static __always_inline bool current_send_call(struct send_call *c)
{
	long nr, write_nr, sendto_nr, sendmsg_nr;
	unsigned long a1, a2, a4;

	if (!cfg_send_call_regs)
		return false;
	void *regs = (void *)bpf_task_pt_regs(bpf_get_current_task_btf());

	if (bpf_core_field_exists(((struct pt_regs___x86 *)0)->orig_ax)) {
		struct pt_regs___x86 *r = regs;

		nr = BPF_CORE_READ(r, orig_ax);
		a1 = BPF_CORE_READ(r, si);
		a2 = BPF_CORE_READ(r, dx);
		a4 = BPF_CORE_READ(r, r8);
		write_nr = 1, sendto_nr = 44, sendmsg_nr = 46;
	} else if (bpf_core_field_exists(((struct pt_regs___arm64 *)0)->syscallno)) {
		struct pt_regs___arm64 *r = regs;

		nr = BPF_CORE_READ(r, syscallno);
		a1 = BPF_CORE_READ(r, regs[1]);
		a2 = BPF_CORE_READ(r, regs[2]);
		a4 = BPF_CORE_READ(r, regs[4]);
		write_nr = 64, sendto_nr = 206, sendmsg_nr = 211;
	} else {
		return false;
	}
	if (nr == sendto_nr || nr == write_nr) {
		c->buf = (const void *)a1;
		c->len = a2;
		c->name = nr == sendto_nr ? (const void *)a4 : NULL;
		return true;
	}
	if (nr != sendmsg_nr)
		return false;
	struct user_msghdr_ m;
	struct user_iovec_ iov;

	if (bpf_probe_read_user(&m, sizeof(m), (const void *)a1) || m.iovlen == 0 ||
	    bpf_probe_read_user(&iov, sizeof(iov), m.iov))
		return false;
	c->buf = iov.base;
	c->len = iov.len;
	c->name = m.name;
	for (int i = 1; i < SEND_CALL_MAX_IOV; i++) {
		if (i >= m.iovlen)
			break;
		if (bpf_probe_read_user(&iov, sizeof(iov), (struct user_iovec_ *)m.iov + i))
			return false;
		c->len += iov.len;
	}
	return m.iovlen <= SEND_CALL_MAX_IOV;
}

static __always_inline bool is_v4_mapped(const __u8 *a)
{
	const __u32 *w = (const __u32 *)a;

	return w[0] == 0 && w[1] == 0 && w[2] == bpf_htonl(0xffff);
}

/*
 * Whether a sendmsg concerns a watched port: the socket's own, its peer's, or the
 * destination the call named. v6fn: the hook is udpv6_sendmsg, which hands sends to an
 * IPv4-mapped destination on to udp_sendmsg: those are left to that hook, so that each
 * failure is reported once.
 */
static __always_inline bool send_watched(const struct sock *sk, const struct named_dest *d,
					 bool btf, bool v6fn, __u16 *lport, __u16 *rport)
{
	if (d->family) {
		*lport = KREAD(btf, sk, __sk_common.skc_num);
		*rport = d->port;
		if (!tuple_watched(*lport, *rport))
			return false;
		if (v6fn && d->family == AF_INET6_ && is_v4_mapped(d->addr))
			return false;
		return KREAD(btf, sk, sk_protocol) == IPPROTO_UDP_;
	}
	if (!udp_sock_watched(sk, btf, lport, rport))
		return false;
	if (v6fn) {
		__u8 daddr[16];

		bpf_core_read(daddr, 16, &sk->__sk_common.skc_v6_daddr);
		return !is_v4_mapped(daddr);
	}
	return true;
}

/*
 * A failed sendmsg (ret < 0) on a watched UDP socket: what the socket and the call knew,
 * with the datagram the system call asked to send, so that the request that never left
 * is known. msg is NULL for the tracepoint backend (sock_send_length does not have it):
 * the destination then comes from the system call too. Successful sends are reported by
 * cgroup egress with their tuple and payload.
 */
static __always_inline void send_failed(const struct sock *sk, const struct msghdr *msg, int ret,
					bool btf, bool v6fn)
{
	struct named_dest d = {};
	struct send_call call = {};
	__u16 lport, rport;

	if (ret >= 0)
		return;
	bool have_call = current_send_call(&call);

	if (msg)
		msg_dest(msg, btf, &d);
	else if (have_call)
		read_dest(call.name, true, &d);
	if (!send_watched(sk, &d, btf, v6fn, &lport, &rport))
		return;
	/* Failed sends are rare: one size class, the largest. */
	struct dt_event *e = task_sock_event(sk, btf, DT_KIND_SEND, sock_cookie(sk, btf),
					     bpf_ktime_get_ns(), DT_MAX_SNAP_LEN);

	if (!e)
		return;
	if (have_call && call.len <= 0xffff) {
		__u64 n = call.len;

		e->len = n;
		if (n > cfg_snap_len)
			n = cfg_snap_len;
		asm volatile("" : "+r"(n)); /* the verifier must see the clamp below */
		if (n > DT_MAX_SNAP_LEN)
			n = DT_MAX_SNAP_LEN;
		if (n && bpf_probe_read_user(e->payload, n, call.buf) == 0)
			e->cap_len = n;
	}
	sock_addrs(e, sk, true, btf);
	if (d.family == AF_INET6_ || (d.family == AF_INET_ && e->family == 4)) {
		__builtin_memcpy(e->daddr, d.addr, 16);
	} else if (d.family == AF_INET_) {
		/* An IPv6 socket sending to an IPv4-mapped address: keep one family. */
		__builtin_memset(e->daddr, 0, 10);
		e->daddr[10] = e->daddr[11] = 0xff;
		__builtin_memcpy(&e->daddr[12], d.addr, 4);
	}
	e->sport = lport;
	e->dport = rport;
	e->ret = ret;
	e->flags |= DT_FLAG_RET;
	submit(e);
}

SEC("tp_btf/sock_send_length")
int BPF_PROG(dt_send_result, struct sock *sk, int ret, int flags)
{
	send_failed(sk, NULL, ret, true, false);
	return 0;
}

/* Datagrams still in a socket's queues (UDP moves sk_receive_queue to reader_queue). */
static __always_inline __u32 queued_datagrams(const struct sock *sk, bool btf)
{
	const struct udp_sock *up = (const struct udp_sock *)sk;

	return KREAD(btf, sk, sk_receive_queue.qlen) + BPF_CORE_READ(up, reader_queue.qlen);
}

static __always_inline bool same_source(const struct rxq_slot *s, const struct read_drops *d)
{
	const __u64 *a = (const __u64 *)s->saddr, *b = (const __u64 *)d->saddr;

	return s->sport == d->sport && s->len == d->len && a[0] == b[0] && a[1] == b[1];
}

/* Takes the datagrams this thread's recvmsg dropped (dt_drop noted them) out of the
 * socket's queue: entries older than them were read or never queued (FIFO), so the head
 * moves past them. */
static __always_inline void rxq_forget_read_drops(struct rx_queue *q)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct read_drops *d = bpf_map_lookup_elem(&read_drops, &id);

	if (!d)
		return;
	if (!q->overflow) {
		__u32 head = q->head, tail = q->tail;

		for (__u32 i = 0; i < 8; i++) {
			__u32 h = head + i;

			if (h == tail)
				break;
			if (same_source(&q->slot[h & (RXQ_SLOTS - 1)], d)) {
				__u32 past = h + d->count;

				q->head = past - head > tail - head ? tail : past;
				break;
			}
		}
	}
	bpf_map_delete_elem(&read_drops, &id);
}

/* A read is watched when its socket's ports are, or when watched datagrams were queued to
 * the socket: a client on an ephemeral port talking to a watched one has an rx_queues
 * entry (ingress made it), and its reads are what tells app_drop for its requests. */
static __always_inline bool read_watched(const struct sock *sk, int flags, bool btf, __u16 *lport,
					 __u16 *rport)
{
	if (flags & MSG_ERRQUEUE_)
		return false;
	if (udp_sock_watched(sk, btf, lport, rport))
		return true;
	/* The cookie field, not the helper: a socket ingress never gave a cookie (most of the
	 * host's) has none and so no entry, and needs neither a cookie made nor a lookup. */
	__u64 cookie = KREAD(btf, sk, __sk_common.skc_cookie.counter);

	return cookie && KREAD(btf, sk, sk_protocol) == IPPROTO_UDP_ &&
	       bpf_map_lookup_elem(&rx_queues, &cookie);
}

/* A recvmsg on a UDP socket has returned ret (bytes read, or -errno). */
static __always_inline void on_read(const struct sock *sk, int ret, int flags, bool btf)
{
	__u16 lport, rport;

	if (!read_watched(sk, flags, btf, &lport, &rport))
		return;
	__u64 cookie = sock_cookie(sk, btf);
	struct rx_queue *q = bpf_map_lookup_elem(&rx_queues, &cookie);

	if (q)
		rxq_forget_read_drops(q);
	/* ret < 0: no datagram was read (EAGAIN, a pending ICMP error, ...). */
	if (ret < 0)
		return;
	__u64 now = bpf_ktime_get_ns();
	bool peek = flags & MSG_PEEK_;
	struct rxq_slot found = {};
	bool have = false;

	if (q && !q->overflow) {
		__u32 head = q->head;

		if (head != q->tail) {
			found = q->slot[head & (RXQ_SLOTS - 1)];
			have = true;
			if (!peek)
				q->head = head + 1;
		}
	}
	if (q && !peek && queued_datagrams(sk, btf) == 0) {
		/* The socket queue is empty, so every entry left is a datagram in flight between
		 * ingress and the queue (microseconds old) or one that never reached the queue:
		 * forget the latter, and end an overflow. */
		if (q->overflow) {
			q->head = q->tail;
			q->overflow = 0;
		} else {
			for (int i = 0; i < 8; i++) {
				__u32 head = q->head;

				if (head == q->tail ||
				    now - q->slot[head & (RXQ_SLOTS - 1)].time_ns < 10000000ULL)
					break;
				q->head = head + 1;
			}
		}
	}
	struct dt_event *e = task_sock_event(sk, btf, DT_KIND_READ, cookie, now, 0);

	if (!e)
		return;
	e->len = ret;
	if (have) {
		e->family = found.family;
		__builtin_memcpy(e->saddr, found.saddr, 16);
		__builtin_memcpy(e->daddr, found.daddr, 16);
		e->sport = found.sport;
		e->dport = found.dport;
		e->queue_ns = now > found.time_ns ? now - found.time_ns : 0;
		e->flags |= DT_FLAG_QUEUE_TIME;
	} else {
		sock_addrs(e, sk, false, btf);
		e->sport = rport;
		e->dport = lport;
	}
	submit(e);
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(dt_read, struct sock *sk, int ret, int flags)
{
	on_read(sk, ret, flags, true);
	return 0;
}

SEC("tp_btf/inet_sk_error_report")
int BPF_PROG(dt_error_report, const struct sock *sk)
{
	__u16 lport, rport;

	if (!udp_sock_watched(sk, true, &lport, &rport))
		return 0;
	__u32 zero = 0;
	struct error_report *r = bpf_map_lookup_elem(&last_error_report, &zero);

	if (!r)
		return 0;
	r->time_ns = bpf_ktime_get_ns();
	r->cookie = bpf_get_socket_cookie((struct sock *)sk);
	r->lport = lport;
	return 0;
}

/* ---- icmp in: the ICMP packet freed at the end of icmp_rcv / icmpv6_rcv ---- */

static __always_inline bool in_range(__u64 addr, __u64 lo, __u64 hi)
{
	return addr >= lo && addr < hi;
}

static __always_inline const void *network_header(const struct sk_buff *skb, bool btf)
{
	__u16 nh = KREAD(btf, skb, network_header);

	if (nh == (__u16)~0U)
		return NULL;
	return KREAD(btf, skb, head) + nh;
}

static __always_inline __u32 skb_netns(const struct sk_buff *skb, bool btf)
{
	if (btf)
		return skb->dev->nd_net.net->ns.inum; /* dev NULL: the load yields 0 */
	return BPF_CORE_READ(skb, dev, nd_net.net, ns.inum);
}

static __always_inline __u32 skb_ifindex(const struct sk_buff *skb, bool btf)
{
	if (btf)
		return skb->dev->ifindex; /* dev NULL: the load yields 0 */
	return BPF_CORE_READ(skb, dev, ifindex);
}

/* Parses the ICMP/ICMPv6 packet skb: 0 when it is an error quoting a watched port. The
 * skb's network header is the outer IP header, its transport header the ICMP one. */
static __always_inline int parse_icmp_in(const struct sk_buff *skb, bool btf, struct ip_info *ip,
					 struct icmp_info *icmp)
{
	const void *iph = network_header(skb, btf);

	if (!iph)
		return -1;
	if (parse_ip(false, NULL, iph, KREAD(btf, skb, protocol), ip) ||
	    parse_icmp_error(false, NULL, iph, ip, icmp))
		return -1;
	return 0;
}

/*
 * Reports an ICMP error received, and whether its socket was told: that is the last error
 * report on this CPU, if it was to the socket that sent the quoted datagram (its local
 * port is the quoted source). exact: the report slot was cleared when this ICMP packet's
 * handling began, so any report belongs to it; otherwise (the packet's free is all the
 * tracepoint backend sees) a report is this packet's only if it is recent.
 */
static __always_inline void emit_icmp_in(const struct ip_info *ip, const struct icmp_info *icmp,
					 __u32 netns, __u32 ifindex, bool exact)
{
	struct dt_event *e = reserve_icmp(ip, icmp, DT_ICMP_IN, netns, ifindex);

	if (!e)
		return;
	__u32 zero = 0;
	struct error_report *r = bpf_map_lookup_elem(&last_error_report, &zero);

	if (cfg_error_reports_seen)
		e->flags |= DT_FLAG_NOTIFIED_KNOWN;
	if (cfg_error_reports_seen && r && r->time_ns &&
	    (exact || e->time_ns - r->time_ns < ERROR_REPORT_MAX_AGE_NS) &&
	    r->lport == icmp->quoted_udp.sport) {
		e->flags |= DT_FLAG_NOTIFIED;
		e->cookie = r->cookie;
		r->time_ns = 0;
	}
	submit(e);
}

/* Reports an ICMP/ICMPv6 error the kernel has just handled, if it quotes a watched port. */
static __always_inline int icmp_in(const struct sk_buff *skb, bool btf)
{
	struct ip_info ip = {};
	struct icmp_info icmp = {};

	if (parse_icmp_in(skb, btf, &ip, &icmp) == 0)
		emit_icmp_in(&ip, &icmp, skb_netns(skb, btf), skb_ifindex(skb, btf), false);
	return 0;
}

SEC("tp_btf/consume_skb")
int BPF_PROG(dt_icmp_in, struct sk_buff *skb)
{
	/* Without kallsyms (both ranges 0) or without the tracepoint's location argument
	 * (before Linux 6.3) every consumed packet is parsed: correct, slower. The argument
	 * is read only when the kernel has it: the verifier skips the dead branch. */
	if (cfg_consume_skb_has_location && cfg_icmp_rcv_hi) {
		__u64 loc = ctx[1];

		if (!in_range(loc, cfg_icmp_rcv_lo, cfg_icmp_rcv_hi) &&
		    !in_range(loc, cfg_icmpv6_rcv_lo, cfg_icmpv6_rcv_hi))
			return 0;
	}
	return icmp_in(skb, true);
}

/* ---- drops ---- */

static __always_inline void rxq_unpush(__u64 cookie)
{
	struct rx_queue *q = bpf_map_lookup_elem(&rx_queues, &cookie);

	if (q && !q->overflow && q->tail != q->head)
		__sync_fetch_and_add(&q->tail, -1);
}

/* A drop by the queueing functions that udp_fail_queue_rcv_skb follows at once on this
 * CPU (softirq), waiting there for the reason its return code tells (kernels whose
 * kfree_skb names none). kind is 0 when the slot is empty. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct dt_event);
} pending_drop SEC(".maps");

/* Whether a drop at loc by a queueing function is the socket queue's refusal, which
 * udp_fail_queue_rcv_skb reports next. udp_queue_rcv_one_skb frees at two places: before
 * udp_csum_pull_header (policy, socket filter, checksum: skb->data at the UDP header) and,
 * in __udp_queue_rcv_skb (inlined or not), after it when __udp_enqueue_schedule_skb
 * failed: skb->data past the UDP header. The same holds for udpv6. */
static __always_inline bool queue_refusal(const struct sk_buff *skb, __u64 loc)
{
	if (!cfg_infer_queue_reason)
		return false;
	if (!in_range(loc, cfg_queue_rcv_lo[0], cfg_queue_rcv_hi[0]) &&
	    !in_range(loc, cfg_queue_rcv_lo[1], cfg_queue_rcv_hi[1]) &&
	    !in_range(loc, cfg_queue_rcv_lo[2], cfg_queue_rcv_hi[2]) &&
	    !in_range(loc, cfg_queue_rcv_lo[3], cfg_queue_rcv_hi[3]))
		return false;
	return skb->data == skb->head + skb->transport_header + 8;
}

static __always_inline void fill_drop(struct dt_event *e, const struct ip_info *ip,
				      const struct udp_info *udp, __u64 cookie, __u32 netns,
				      __u32 ifindex, __u32 reason, __u64 loc)
{
	zero_header(e);
	e->kind = DT_KIND_DROP;
	e->time_ns = bpf_ktime_get_ns();
	e->cookie = cookie;
	e->netns = netns;
	e->ifindex = ifindex;
	copy_addrs(e, ip);
	e->sport = udp->sport;
	e->dport = udp->dport;
	e->len = udp->len;
	e->reason = reason;
	e->location = loc;
}

SEC("tp_btf/kfree_skb")
int BPF_PROG(dt_drop, struct sk_buff *skb, void *location)
{
	__u64 loc = (__u64)location;
	/* The receiving socket, an argument since Linux 6.11, and the reason, since 5.17:
	 * read only when there (the verifier refuses an argument the tracepoint lacks). */
	struct sock *rx_sk = NULL;
	__u32 reason = ~0U;

	if (cfg_kfree_skb_has_rx_sk)
		rx_sk = (struct sock *)ctx[3];
	if (cfg_kfree_skb_has_reason)
		reason = (__u32)ctx[2];

	if (in_range(loc, cfg_close_free_lo[0], cfg_close_free_hi[0]) ||
	    in_range(loc, cfg_close_free_lo[1], cfg_close_free_hi[1]))
		return 0;
	/* Before Linux 6.x icmpv6_rcv frees every ICMPv6 error it handled with kfree_skb
	 * (NOT_SPECIFIED, "assume failure"; no reason at all before 5.17): that is an icmp
	 * in, not a drop. */
	if ((reason == cfg_reason_not_specified || !cfg_kfree_skb_has_reason) &&
	    (in_range(loc, cfg_icmpv6_rcv_lo, cfg_icmpv6_rcv_hi) ||
	     in_range(loc, cfg_icmp_rcv_lo, cfg_icmp_rcv_hi)))
		return cfg_icmp_in_by_free ? icmp_in(skb, true) : 0;
	__u16 l3proto = skb->protocol;

	if (l3proto != bpf_htons(ETH_P_IP) && l3proto != bpf_htons(ETH_P_IPV6))
		return 0;
	const void *iph = network_header(skb, true);

	if (!iph)
		return 0;
	struct ip_info ip = {};
	struct udp_info udp = {};

	if (parse_ip(false, NULL, iph, l3proto, &ip) || ip.proto != IPPROTO_UDP_)
		return 0;
	struct frag_key fk = {};

	if (ip.fragment) {
		__builtin_memcpy(fk.saddr, ip.saddr, 16);
		__builtin_memcpy(fk.daddr, ip.daddr, 16);
		fk.id = ip.frag_id;
		fk.family = ip.family;
	}
	struct frag_origin *origin = NULL;

	if (ip.first_fragment) {
		if (parse_udp(false, NULL, iph, &ip, &udp) || !tuple_watched(udp.sport, udp.dport))
			return 0;
	} else {
		origin = bpf_map_lookup_elem(&watched_frags, &fk);
		if (!origin)
			return 0;
	}
	__u64 cookie = 0;
	__u32 netns = 0, ifindex = 0;

	if (rx_sk) {
		cookie = bpf_get_socket_cookie(rx_sk);
		/* A queue's refusal is dt_enqueue's when it runs (cfg_unpush_by_enqueue). */
		if (reason == cfg_reason_socket_filter ||
		    (!cfg_unpush_by_enqueue &&
		     (reason == cfg_reason_rcvbuff || reason == cfg_reason_proto_mem)))
			rxq_unpush(cookie);
		netns = sock_netns_btf(rx_sk);
	} else {
		netns = skb_netns(skb, true);
	}
	ifindex = skb_ifindex(skb, true);
	if (origin) {
		if (!netns)
			netns = origin->netns;
		if (!ifindex)
			ifindex = origin->ifindex;
	} else if (ip.fragment) {
		struct frag_origin o = {.netns = netns, .ifindex = ifindex};

		bpf_map_update_elem(&watched_frags, &fk, &o, BPF_ANY);
	}
	if (in_range(loc, cfg_recvmsg_lo[0], cfg_recvmsg_hi[0]) ||
	    in_range(loc, cfg_recvmsg_lo[1], cfg_recvmsg_hi[1])) {
		/* Freed by the reader's recvmsg: this task's netns is the socket's, and the
		 * datagram must leave the socket's rx_queues entry (dt_read does it). */
		if (!netns && cfg_task_btf) {
			struct task_struct *task = bpf_get_current_task_btf();

			netns = task->nsproxy->net_ns->ns.inum; /* NULL pointers load 0 */
		} else if (!netns) {
			struct task_struct *task = (struct task_struct *)bpf_get_current_task();

			netns = BPF_CORE_READ(task, nsproxy, net_ns, ns.inum);
		}
		__u64 id = bpf_get_current_pid_tgid();
		struct read_drops *d = bpf_map_lookup_elem(&read_drops, &id);

		if (d) {
			d->count++;
		} else {
			struct read_drops nd = {.count = 1, .sport = udp.sport, .len = udp.len};

			__builtin_memcpy(nd.saddr, ip.saddr, 16);
			bpf_map_update_elem(&read_drops, &id, &nd, BPF_ANY);
		}
	}
	if (cfg_netns && netns != cfg_netns)
		return 0;
	if (queue_refusal(skb, loc)) {
		__u32 zero = 0;
		struct dt_event *p = bpf_map_lookup_elem(&pending_drop, &zero);

		if (p) {
			fill_drop(p, &ip, &udp, cookie, netns, ifindex, reason, loc);
			return 0;
		}
	}
	struct dt_event *e = reserve(sizeof(*e));

	if (!e)
		return 0;
	fill_drop(e, &ip, &udp, cookie, netns, ifindex, reason, loc);
	submit(e);
	return 0;
}

/* The socket queue's refusal that dt_drop holds, with its reason inferred from rc (kernels
 * whose kfree_skb names none). Arguments (rc, sk) on every kernel; skb follows since 6.x. */
SEC("tp_btf/udp_fail_queue_rcv_skb")
int BPF_PROG(dt_fail_queue, int rc, struct sock *sk)
{
	__u32 zero = 0;
	struct dt_event *p = bpf_map_lookup_elem(&pending_drop, &zero);

	if (!p || !p->kind)
		return 0;
	p->kind = 0;
	/* The cookie exists: cgroup ingress asked for it before the queue refused. */
	__u64 cookie = sock_cookie(sk, false);

	if (!cfg_unpush_by_enqueue)
		rxq_unpush(cookie);
	struct dt_event *e = reserve(sizeof(*e));

	if (!e)
		return 0;
	__builtin_memcpy(e, p, sizeof(*e));
	e->kind = DT_KIND_DROP;
	e->cookie = cookie;
	if (!e->netns)
		e->netns = sock_netns(sk);
	e->flags |= DT_FLAG_REASON_INFERRED;
	e->reason = rc == -12 /* ENOMEM */ ? DT_INFERRED_SOCKET_RCVBUFF : DT_INFERRED_PROTO_MEM;
	submit(e);
	return 0;
}

/*
 * ---- fentry backend: fexit on the UDP functions themselves ----
 *
 * Preferred where the kernel has BPF trampolines: these run only for UDP (the tracepoints
 * above fire for every socket), get their arguments typed, see the destination a failed
 * sendmsg named, and exist on kernels older than sock_send_length/sock_recv_length (6.3).
 * Each program is loaded only when the plan picks its backend for its class.
 */

SEC("fexit/udp_sendmsg")
int BPF_PROG(dt_send_fexit, struct sock *sk, struct msghdr *msg, size_t len, int ret)
{
	send_failed(sk, msg, ret, true, false);
	return 0;
}

SEC("fexit/udpv6_sendmsg")
int BPF_PROG(dt_send6_fexit, struct sock *sk, struct msghdr *msg, size_t len, int ret)
{
	send_failed(sk, msg, ret, true, true);
	return 0;
}

/* The Linux 5.19+ argument list; user space does not pick fexit for older kernels. */
SEC("fexit/udp_recvmsg")
int BPF_PROG(dt_read_fexit, struct sock *sk)
{
	/* (sk, msg, len, noblock, flags, addr_len) before Linux 5.19, then ret. */
	if (cfg_recvmsg_has_noblock)
		on_read(sk, (int)ctx[6], (int)ctx[4], true);
	else
		on_read(sk, (int)ctx[5], (int)ctx[3], true);
	return 0;
}

SEC("fexit/udpv6_recvmsg")
int BPF_PROG(dt_read6_fexit, struct sock *sk)
{
	/* (sk, msg, len, noblock, flags, addr_len) before Linux 5.19, then ret. */
	if (cfg_recvmsg_has_noblock)
		on_read(sk, (int)ctx[6], (int)ctx[4], true);
	else
		on_read(sk, (int)ctx[5], (int)ctx[3], true);
	return 0;
}

/*
 * ICMP errors received: icmp_rcv and icmpv6_rcv run only for ICMP. At entry the packet is
 * parsed (by the exit it is freed) and this CPU's error-report slot cleared; at the exit
 * the socket has been told or not (dt_error_report) and the event is sent. The UDP error
 * handlers would be narrower, but the kernel does not call them for every error: IPv4
 * fragment reassembly time exceeded stops in icmp_unreach, and Debian's 6.1 attaches
 * fexit neither to __udp6_lib_err nor to udpv6_err. Softirq does not nest on a CPU, so a
 * per-CPU slot carries the parsed packet from entry to exit.
 */
struct pending_icmp {
	struct ip_info ip;
	struct icmp_info icmp;
	__u32 netns;
	__u32 ifindex;
	__u32 valid;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct pending_icmp);
} pending_icmp SEC(".maps");

static __always_inline void icmp_rcv_begin(const struct sk_buff *skb, bool btf)
{
	__u32 zero = 0;
	struct pending_icmp *p = bpf_map_lookup_elem(&pending_icmp, &zero);
	struct error_report *r = bpf_map_lookup_elem(&last_error_report, &zero);

	if (!p || !r)
		return;
	p->valid = 0;
	if (parse_icmp_in(skb, btf, &p->ip, &p->icmp))
		return;
	p->netns = skb_netns(skb, btf);
	p->ifindex = skb_ifindex(skb, btf);
	p->valid = 1;
	r->time_ns = 0;
}

static __always_inline void icmp_rcv_end(void)
{
	__u32 zero = 0;
	struct pending_icmp *p = bpf_map_lookup_elem(&pending_icmp, &zero);

	if (!p || !p->valid)
		return;
	p->valid = 0;
	emit_icmp_in(&p->ip, &p->icmp, p->netns, p->ifindex, true);
}

SEC("fentry/icmp_rcv")
int BPF_PROG(dt_icmp_rcv_fentry, struct sk_buff *skb)
{
	icmp_rcv_begin(skb, true);
	return 0;
}

SEC("fexit/icmp_rcv")
int BPF_PROG(dt_icmp_rcv_fexit)
{
	icmp_rcv_end();
	return 0;
}

SEC("fentry/icmpv6_rcv")
int BPF_PROG(dt_icmp6_rcv_fentry, struct sk_buff *skb)
{
	icmp_rcv_begin(skb, true);
	return 0;
}

SEC("fexit/icmpv6_rcv")
int BPF_PROG(dt_icmp6_rcv_fexit)
{
	icmp_rcv_end();
	return 0;
}

/*
 * A datagram cgroup ingress saw that its socket's queue then refused (receive buffer or
 * protocol memory full) leaves the socket's rx_queues entry, so that reads stay linked to
 * their own datagrams. kfree_skb names the socket only since Linux 6.11; this hook has
 * it on every kernel. A socket filter's drop (before the queue) is still dt_drop's.
 */
static __always_inline void enqueue_end(const struct sock *sk, int ret, bool btf)
{
	__u16 lport, rport;

	if (ret < 0 && udp_sock_watched(sk, btf, &lport, &rport))
		rxq_unpush(sock_cookie(sk, btf));
}

SEC("fexit/__udp_enqueue_schedule_skb")
int BPF_PROG(dt_enqueue_fexit, struct sock *sk, struct sk_buff *skb, int ret)
{
	enqueue_end(sk, ret, true);
	return 0;
}

/*
 * ---- kprobe backend: the same functions, for kernels without BPF trampolines ----
 *
 * A kprobe sees the arguments, its kretprobe the return value: the entry program keeps
 * what the return needs, for watched sockets only. sendmsg and recvmsg may sleep and move
 * CPUs, so their calls are keyed by thread; the UDP error handlers run in softirq, which
 * does not nest on a CPU, so a per-CPU slot does.
 */

/* Argument registers, whatever the architecture (struct pt_regs___x86 and ___arm64
 * above). Read with bpf_probe_read_kernel, as libbpf's PT_REGS_PARM*_CORE do: clang may
 * fold the choice of register into the address, and the verifier allows no load through
 * a context pointer moved by a register. */
static __always_inline __u64 kprobe_arg(struct pt_regs *ctx, const int n)
{
	struct pt_regs___x86 *x86 = (void *)ctx;
	struct pt_regs___arm64 *arm64 = (void *)ctx;
	__u64 v = 0;

	if (!bpf_core_field_exists(x86->di))
		bpf_core_read(&v, sizeof(v), &arm64->regs[n]);
	else if (n == 0)
		bpf_core_read(&v, sizeof(v), &x86->di);
	else if (n == 1)
		bpf_core_read(&v, sizeof(v), &x86->si);
	else if (n == 2)
		bpf_core_read(&v, sizeof(v), &x86->dx);
	else if (n == 3)
		bpf_core_read(&v, sizeof(v), &x86->cx);
	else
		bpf_core_read(&v, sizeof(v), &x86->r8);
	return v;
}

static __always_inline long kprobe_ret(struct pt_regs *ctx)
{
	struct pt_regs___x86 *x86 = (void *)ctx;
	struct pt_regs___arm64 *arm64 = (void *)ctx;
	__u64 v = 0;

	if (bpf_core_field_exists(x86->ax))
		bpf_core_read(&v, sizeof(v), &x86->ax);
	else
		bpf_core_read(&v, sizeof(v), &arm64->regs[0]);
	return v;
}

/* A watched call in progress: its socket and its msghdr (send) or flags (read). */
struct call_args {
	__u64 sk;
	__u64 arg;
	__u64 v6fn;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, struct call_args);
} calls SEC(".maps");

static __always_inline void call_begin(__u64 sk, __u64 arg, bool v6fn)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct call_args a = {.sk = sk, .arg = arg, .v6fn = v6fn};

	bpf_map_update_elem(&calls, &id, &a, BPF_ANY);
}

/* Takes the calling thread's watched call, if it has one. */
static __always_inline bool call_end(struct call_args *a)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct call_args *p = bpf_map_lookup_elem(&calls, &id);

	if (!p)
		return false;
	*a = *p;
	bpf_map_delete_elem(&calls, &id);
	return true;
}

static __always_inline int send_entry(struct pt_regs *ctx, bool v6fn)
{
	const struct sock *sk = (const struct sock *)kprobe_arg(ctx, 0);
	const struct msghdr *msg = (const struct msghdr *)kprobe_arg(ctx, 1);
	struct named_dest d = {};
	__u16 lport, rport;

	msg_dest(msg, false, &d);
	if (send_watched(sk, &d, false, v6fn, &lport, &rport))
		call_begin((__u64)sk, (__u64)msg, v6fn);
	return 0;
}

SEC("kprobe/udp_sendmsg")
int dt_send_kprobe(struct pt_regs *ctx)
{
	return send_entry(ctx, false);
}

SEC("kprobe/udpv6_sendmsg")
int dt_send6_kprobe(struct pt_regs *ctx)
{
	return send_entry(ctx, true);
}

/* Attached to the returns of udp_sendmsg and udpv6_sendmsg. The msghdr is still the
 * caller's: udpv6_sendmsg restores its msg_name only after udp_sendmsg returned. */
SEC("kretprobe/udp_sendmsg")
int dt_send_kretprobe(struct pt_regs *ctx)
{
	struct call_args a;

	if (call_end(&a))
		send_failed((const struct sock *)a.sk, (const struct msghdr *)a.arg,
			    (int)kprobe_ret(ctx), false, a.v6fn);
	return 0;
}

/* Attached to udp_recvmsg and udpv6_recvmsg: the same arguments. */
SEC("kprobe/udp_recvmsg")
int dt_read_kprobe(struct pt_regs *ctx)
{
	const struct sock *sk = (const struct sock *)kprobe_arg(ctx, 0);
	int flags = (int)(cfg_recvmsg_has_noblock ? kprobe_arg(ctx, 4) : kprobe_arg(ctx, 3));
	__u16 lport, rport;

	if (read_watched(sk, flags, false, &lport, &rport))
		call_begin((__u64)sk, (__u64)flags, false);
	return 0;
}

SEC("kretprobe/udp_recvmsg")
int dt_read_kretprobe(struct pt_regs *ctx)
{
	struct call_args a;

	if (call_end(&a))
		on_read((const struct sock *)a.sk, (int)kprobe_ret(ctx), (int)a.arg, false);
	return 0;
}

/* Attached to icmp_rcv and icmpv6_rcv. */
SEC("kprobe/icmp_rcv")
int dt_icmp_rcv_kprobe(struct pt_regs *ctx)
{
	icmp_rcv_begin((const struct sk_buff *)kprobe_arg(ctx, 0), false);
	return 0;
}

SEC("kretprobe/icmp_rcv")
int dt_icmp_rcv_kretprobe(struct pt_regs *ctx)
{
	icmp_rcv_end();
	return 0;
}

/* The socket __udp_enqueue_schedule_skb is queueing to on this CPU (softirq). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} enqueue_sock SEC(".maps");

SEC("kprobe/__udp_enqueue_schedule_skb")
int dt_enqueue_kprobe(struct pt_regs *ctx)
{
	__u32 zero = 0;
	__u64 *slot = bpf_map_lookup_elem(&enqueue_sock, &zero);

	if (slot)
		*slot = kprobe_arg(ctx, 0);
	return 0;
}

SEC("kretprobe/__udp_enqueue_schedule_skb")
int dt_enqueue_kretprobe(struct pt_regs *ctx)
{
	__u32 zero = 0;
	__u64 *slot = bpf_map_lookup_elem(&enqueue_sock, &zero);

	if (!slot || !*slot)
		return 0;
	const struct sock *sk = (const struct sock *)*slot;

	*slot = 0;
	enqueue_end(sk, (int)kprobe_ret(ctx), false);
	return 0;
}
