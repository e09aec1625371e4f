//go:build unix

package decode

import (
	"bytes"
	"crypto/ecdsa"
	"fmt"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/p2p/enode"
)

// The goal is >= 1,000,000 headers unmasked per second per core:
//
//	go test -bench BenchmarkV5Unmask -run '^$' ./decode
//
// Each sub-benchmark reports pkts/s (wall clock) and pkts/cpu-s, the rate per second
// of CPU time the process used: on a shared, busy machine the wall-clock figure
// counts time spent waiting for a core, the CPU-time one is the per-core cost. Run
// with -cpu 1.
func BenchmarkV5Unmask(b *testing.B) {
	msg := v5ReadVector(b, "v5.1-ping-message")
	way := v5ReadVector(b, "v5.1-whoareyou")
	hs := v5ReadVector(b, "v5.1-ping-handshake")

	run := func(b *testing.B, d *V5Decoder, r *Record, wantOK bool) {
		b.Helper()
		b.ReportAllocs()
		cpu := v5StartCPU()
		for b.Loop() {
			if _, ok := d.Decode(r); ok != wantOK {
				b.Fatalf("decoded %v, want %v", ok, wantOK)
			}
		}
		v5ReportRates(b, cpu)
	}

	// The common case: a packet to a local node, no session (e.g. a random packet).
	b.Run("message to local node", func(b *testing.B) {
		d := NewV5Decoder([]*ecdsa.PrivateKey{v5TestKeyB})
		run(b, d, v5Datagram(v5AddrA, v5AddrB, msg.packet), true)
	})
	b.Run("whoareyou", func(b *testing.B) {
		d := NewV5Decoder([]*ecdsa.PrivateKey{v5TestKeyB})
		run(b, d, v5Datagram(v5AddrA, v5AddrB, way.packet), true)
	})
	// An outbound packet: the destination's ID is learned from its address.
	b.Run("message to learned address", func(b *testing.B) {
		d := NewV5Decoder(nil)
		d.LearnAddr(v5TestIDB, v5AddrB)
		run(b, d, v5Datagram(v5AddrA, v5AddrB, msg.packet), true)
	})
	// Header only: finding the key and unmasking static header and authdata.
	b.Run("header only", func(b *testing.B) {
		d := NewV5Decoder([]*ecdsa.PrivateKey{v5TestKeyB})
		data := msg.packet
		b.ReportAllocs()
		cpu := v5StartCPU()
		for b.Loop() {
			_, block, ok := d.findDestination(v5AddrB, data)
			if !ok {
				b.Fatal("not unmasked")
			}
			hdr := append(d.hdr[:0], data[:v5StaticEnd+v5MsgAuthSize]...)
			d.mask.xor(block, data[:v5IVSize], 0, hdr[v5IVSize:])
		}
		v5ReportRates(b, cpu)
	})
	// With session keys: unmask, AES-GCM open and message decoding.
	b.Run("message decrypted", func(b *testing.B) {
		d := NewV5Decoder([]*ecdsa.PrivateKey{v5TestKeyB})
		var key [v5KeySize]byte
		copy(key[:], msg.bytes(b, "read-key"))
		d.st.addKey(v5SessionID{v5Direction{v5TestIDA, v5TestIDB}, v5AddrA, v5AddrB}, key)
		run(b, d, v5Datagram(v5AddrA, v5AddrB, msg.packet), true)
	})
	// A handshake with key recovery (ECDH, HKDF, id-signature check): rare, costly.
	b.Run("handshake decrypted", func(b *testing.B) {
		d := NewV5Decoder([]*ecdsa.PrivateKey{v5TestKeyB})
		d.st.storeChallenge(v5TestIDA, v5Challenge{data: hs.bytes(b, "whoareyou.challenge-data"), challengerAddr: v5AddrB, challengerID: v5TestIDB, hasChallengerID: true})
		d.AddNode(enode.NewV4(&v5TestKeyA.PublicKey, v5AddrA.Addr().AsSlice(), 0, int(v5AddrA.Port())))
		run(b, d, v5Datagram(v5AddrA, v5AddrB, hs.packet), true)
	})
	// Worst case: a non-discv5 datagram tried against every known ID.
	for _, known := range []int{16, v5MaxKnownIDs} {
		b.Run(fmt.Sprintf("not discv5, %d known IDs", known), func(b *testing.B) {
			d := NewV5Decoder([]*ecdsa.PrivateKey{v5TestKeyB})
			for i := 0; i < known; i++ {
				d.AddKnownID(enode.ID{byte(i >> 8), byte(i), 0xee})
			}
			junk := bytes.Repeat([]byte{0x5a}, 120)
			run(b, d, v5Datagram(v5AddrA, netip.MustParseAddrPort("10.0.0.7:30303"), junk), false)
		})
	}
	// Junk to the local node's own address: only its own ID can unmask what it receives.
	b.Run(fmt.Sprintf("not discv5 to the local node, %d known IDs", v5MaxKnownIDs), func(b *testing.B) {
		d := NewV5Decoder([]*ecdsa.PrivateKey{v5TestKeyB})
		d.LearnAddr(v5TestIDB, v5AddrB)
		for i := 0; i < v5MaxKnownIDs; i++ {
			d.AddKnownID(enode.ID{byte(i >> 8), byte(i), 0xee})
		}
		run(b, d, v5Datagram(v5AddrA, v5AddrB, bytes.Repeat([]byte{0x5a}, 120)), false)
	})
}

// v5ProcessCPU is the CPU time (user + system) the process has used.
func v5ProcessCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func v5StartCPU() time.Duration { return v5ProcessCPU() }

func v5ReportRates(b *testing.B, cpuStart time.Duration) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pkts/s")
	if cpu := v5ProcessCPU() - cpuStart; cpu > 0 {
		b.ReportMetric(float64(b.N)/cpu.Seconds(), "pkts/cpu-s")
	}
}
