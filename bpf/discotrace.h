/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The one event layout shared by every discotrace BPF program and by the Go tracer, which
 * gets its types from this header through bpf2go -type (never written twice by hand).
 *
 * Include after vmlinux.h (it provides the __u8..__u64 types).
 */
#ifndef DISCOTRACE_H
#define DISCOTRACE_H

/* Limits user space needs too; an enum so that bpf2go exports it. */
enum dt_limits {
	/* Largest payload capture: 1280 bytes is the largest discv5 (and discv4) packet. */
	DT_MAX_SNAP_LEN = 1280,
};

/* Event classes. The values are the Go tracer.Kind values (lost is made in user space). */
enum dt_kind {
	DT_KIND_SEND = 1, /* a datagram leaving a UDP socket, or a failed send */
	DT_KIND_RECV = 2, /* a datagram reaching a UDP socket, before its receive queue */
	DT_KIND_READ = 3, /* the application reading a datagram (recvmsg) */
	DT_KIND_ICMP = 4, /* an ICMP/ICMPv6 error quoting a datagram of a watched port */
	DT_KIND_DROP = 5, /* the kernel freeing a datagram or fragment with a drop reason */
};

/* Bits of dt_event.flags: which optional fields are valid. */
enum dt_flag {
	DT_FLAG_PROC = 1,	     /* pid, tid, comm are the task the event belongs to */
	DT_FLAG_RET = 2,	     /* ret holds the sendmsg return value */
	DT_FLAG_QUEUE_TIME = 4,	     /* queue_ns holds the time a read datagram waited */
	DT_FLAG_NOTIFIED_KNOWN = 8,  /* the notified bit below is meaningful */
	DT_FLAG_NOTIFIED = 16,	     /* the owning socket was told of the ICMP error */
	DT_FLAG_REASON_INFERRED = 32, /* reason is an enum dt_inferred_reason, not the kernel's */
};

/*
 * Drop reasons discotrace infers on kernels whose kfree_skb names none (before Linux 5.17),
 * only where the kernel's code leaves no doubt: a datagram the socket's queue refused, told
 * by udp_fail_queue_rcv_skb's return code as 5.17's kernel itself tells it.
 */
enum dt_inferred_reason {
	DT_INFERRED_SOCKET_RCVBUFF = 1, /* -ENOMEM: the receive buffer was full */
	DT_INFERRED_PROTO_MEM = 2,	/* any other error (-ENOBUFS): UDP's memory limit */
};

enum dt_icmp_dir {
	DT_ICMP_IN = 1,	 /* received by this host */
	DT_ICMP_OUT = 2, /* sent by this host */
};

/*
 * One ring buffer record: this fixed header, then cap_len payload bytes. Addresses are in
 * network byte order (IPv4 in the first 4 bytes, family says which); ports in host order.
 */
struct dt_event {
	__u64 time_ns;	 /* bpf_ktime_get_ns(): CLOCK_MONOTONIC */
	__u64 cookie;	 /* socket cookie, 0 when no socket */
	__u64 cgroup_id; /* cgroup v2 id of the socket (send, recv) or task (read) */
	__u64 location;	 /* drop: kernel text address of the code that freed it */
	__u64 queue_ns;	 /* read: time the datagram waited in the receive queue */
	__s64 ret;	 /* send: sendmsg return value (bytes or -errno) */
	__u32 pid;	 /* tgid */
	__u32 tid;
	__u32 netns;   /* network namespace inode */
	__u32 ifindex; /* device the packet came in or went out on, 0 when unknown */
	__u32 reason;  /* drop: enum skb_drop_reason value (names from the kernel's BTF), or
			* with DT_FLAG_REASON_INFERRED an enum dt_inferred_reason */
	__u16 len;     /* UDP payload length (icmp: of the quoted datagram) */
	__u16 cap_len; /* payload bytes following this header */
	__u16 sport;
	__u16 dport;
	__u16 quoted_sport;
	__u16 quoted_dport;
	__u8 kind;	    /* enum dt_kind */
	__u8 family;	    /* 4 or 6: of saddr/daddr; 0 when unknown */
	__u8 quoted_family; /* 4 or 6: of quoted_saddr/quoted_daddr */
	__u8 flags;	    /* enum dt_flag bits */
	__u8 icmp_type;
	__u8 icmp_code;
	__u8 icmp_dir; /* enum dt_icmp_dir */
	__u8 _pad;
	__u8 saddr[16];
	__u8 daddr[16];
	__u8 quoted_saddr[16];
	__u8 quoted_daddr[16];
	char comm[16];
	__u8 payload[];
};

#endif /* DISCOTRACE_H */
