package netlab

import (
	"fmt"
	"net/netip"

	"golang.org/x/sys/unix"
)

// RawIPv4 sends hand-built IPv4 packets through a raw socket (IPPROTO_RAW, which implies
// IP_HDRINCL): the kernel sends the header as given, except that it fills in the total
// length and header checksum. Such packets carry no checksum offload state
// (CHECKSUM_NONE), so a veth peer's receive path verifies the UDP checksum for real.
type RawIPv4 struct {
	fd int
}

// OpenRawIPv4 opens a raw IPv4 socket in the calling thread's namespace: call it inside
// Netns.Do to send from that namespace.
func OpenRawIPv4() (*RawIPv4, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
	if err != nil {
		return nil, fmt.Errorf("open raw IPv4 socket (needs CAP_NET_RAW): %w", err)
	}
	return &RawIPv4{fd: fd}, nil
}

// Send sends one IPv4 packet to the destination in its header.
func (r *RawIPv4) Send(p []byte) error {
	if len(p) < ipv4HeaderLen {
		return fmt.Errorf("%d bytes is no IPv4 packet", len(p))
	}
	to := &unix.SockaddrInet4{}
	copy(to.Addr[:], p[16:20])
	if err := unix.Sendto(r.fd, p, 0, to); err != nil {
		return fmt.Errorf("send raw packet to %v: %w", netip.AddrFrom4(to.Addr), err)
	}
	return nil
}

// Close closes the socket.
func (r *RawIPv4) Close() error { return unix.Close(r.fd) }

// SendFragmentsWithheld sends datagram d from the calling thread's namespace as IPv4
// fragments of at most fragData payload bytes each, except the fragments whose indexes
// are in withheld (0 is the first, the one with the UDP header). The receiver can never
// reassemble it: its fragment queue times out after net.ipv4.ipfrag_time seconds. It
// returns how many fragments the datagram had.
func SendFragmentsWithheld(d UDP4, fragData int, withheld ...int) (int, error) {
	p, err := d.Packet()
	if err != nil {
		return 0, err
	}
	frags, err := FragmentIPv4(p, fragData)
	if err != nil {
		return 0, err
	}
	skip := map[int]bool{}
	for _, i := range withheld {
		if i < 0 || i >= len(frags) {
			return 0, fmt.Errorf("fragment %d withheld, but the datagram has fragments 0..%d", i, len(frags)-1)
		}
		skip[i] = true
	}
	raw, err := OpenRawIPv4()
	if err != nil {
		return 0, err
	}
	defer raw.Close()
	for i, f := range frags {
		if skip[i] {
			continue
		}
		if err := raw.Send(f); err != nil {
			return 0, fmt.Errorf("fragment %d of %d: %w", i, len(frags), err)
		}
	}
	return len(frags), nil
}

// SendBadChecksum sends datagram d from the calling thread's namespace, unfragmented,
// with a wrong (non-zero) UDP checksum. The receiving kernel drops it with reason
// UDP_CSUM: at once in __udp4_lib_rcv when the UDP header and payload are at most 76
// bytes (the kernel checks short packets completely on arrival), otherwise only when a
// socket reads it (udp_recvmsg), since longer packets are queued unchecked.
func SendBadChecksum(d UDP4) error {
	p, err := d.Packet()
	if err != nil {
		return err
	}
	CorruptUDPChecksum(p)
	raw, err := OpenRawIPv4()
	if err != nil {
		return err
	}
	defer raw.Close()
	return raw.Send(p)
}
