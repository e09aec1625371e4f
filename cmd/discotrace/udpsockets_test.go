package main

import "testing"

// Lines as /proc/net/udp and udp6 show them: the local port is the hex after the address.
func TestLocalPortOfAProcNetUDPLine(t *testing.T) {
	for _, tc := range []struct {
		line string
		port uint16
		ok   bool
	}{
		{"  227: 0100007F:765F 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 289289 2 0000000074a2c4ec 0", 30303, true},
		{" 4639: 00000000000000000000000001000000:2328 00000000000000000000000000000000:0000 07 00000000:00000900 00:00000000 00000000     0        0 289290 2 0000000031c33d2a 0", 9000, true},
		{"   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops", 0, false},
		{"", 0, false},
	} {
		if port, ok := localPort(tc.line); port != tc.port || ok != tc.ok {
			t.Errorf("%q: port %d, %v; want %d, %v", tc.line, port, ok, tc.port, tc.ok)
		}
	}
}
