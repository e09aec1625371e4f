package addrkey

import (
	"net/netip"
	"testing"
	"unsafe"
)

func TestRoundTrip(t *testing.T) {
	for _, s := range []string{"10.99.0.1:30303", "[::ffff:10.99.0.1]:30303", "[2001:db8::1]:9", "0.0.0.0:0", "[::]:65535"} {
		a := netip.MustParseAddrPort(s)
		if got := Of(a).AddrPort(); got != a {
			t.Errorf("%s: round trip gives %s", s, got)
		}
	}
	if got := Of(netip.AddrPort{}).AddrPort(); got != (netip.AddrPort{}) {
		t.Errorf("the zero endpoint round-trips to %s", got)
	}
}

func TestDistinct(t *testing.T) {
	// An IPv4 address and its IPv4-mapped IPv6 form are different endpoints, as they are
	// for netip; so are the zero endpoint and 0.0.0.0:0 and [::]:0.
	keys := map[Key]string{}
	for _, s := range []string{"10.99.0.1:30303", "[::ffff:10.99.0.1]:30303", "10.99.0.1:30304", "0.0.0.0:0", "[::]:0"} {
		k := Of(netip.MustParseAddrPort(s))
		if other, dup := keys[k]; dup {
			t.Errorf("%s and %s have the same key", s, other)
		}
		keys[k] = s
	}
	if _, dup := keys[Of(netip.AddrPort{})]; dup {
		t.Error("the zero endpoint has the key of a valid one")
	}
}

func TestSize(t *testing.T) {
	if n := unsafe.Sizeof(Key{}); n != 19 {
		t.Errorf("Key is %d bytes, want 19", n)
	}
}
