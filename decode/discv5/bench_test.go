//go:build unix

package discv5

import (
	"bytes"
	"crypto/ecdsa"
	"fmt"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/p2p/enode"

	"github.com/discotrace/discotrace/decode/record"
)

// The goal is >= 1,000,000 headers unmasked per second per core:
//
//	go test -bench BenchmarkV5Unmask -run '^$' ./decode/discv5
//
// Each sub-benchmark reports pkts/s (wall clock) and pkts/cpu-s, the rate per second
// of CPU time the process used: on a shared, busy machine the wall-clock figure
// counts time spent waiting for a core, the CPU-time one is the per-core cost. Run
// with -cpu 1.
func BenchmarkV5Unmask(b *testing.B) {
	msg := readVector(b, "v5.1-ping-message")
	way := readVector(b, "v5.1-whoareyou")
	hs := readVector(b, "v5.1-ping-handshake")

	run := func(b *testing.B, d *Decoder, r *record.Record, wantOK bool) {
		b.Helper()
		b.ReportAllocs()
		cpu := startCPU()
		for b.Loop() {
			if _, ok := d.Decode(r); ok != wantOK {
				b.Fatalf("decoded %v, want %v", ok, wantOK)
			}
		}
		reportRates(b, cpu)
	}

	// The common case: a packet to a local node, no session (e.g. a random packet).
	b.Run("message to local node", func(b *testing.B) {
		d := NewDecoder([]*ecdsa.PrivateKey{testKeyB}, 0)
		run(b, d, datagram(addrA, addrB, msg.packet), true)
	})
	b.Run("whoareyou", func(b *testing.B) {
		d := NewDecoder([]*ecdsa.PrivateKey{testKeyB}, 0)
		run(b, d, datagram(addrA, addrB, way.packet), true)
	})
	// An outbound packet: the destination's ID is learned from its address.
	b.Run("message to learned address", func(b *testing.B) {
		d := NewDecoder(nil, 0)
		d.LearnAddr(testIDB, addrB)
		run(b, d, datagram(addrA, addrB, msg.packet), true)
	})
	// Header only: finding the key and unmasking static header and authdata.
	b.Run("header only", func(b *testing.B) {
		d := NewDecoder([]*ecdsa.PrivateKey{testKeyB}, 0)
		data := msg.packet
		b.ReportAllocs()
		cpu := startCPU()
		for b.Loop() {
			_, block, ok := d.findDestination(addrB, data)
			if !ok {
				b.Fatal("not unmasked")
			}
			hdr := append(d.hdr[:0], data[:staticEnd+msgAuthSize]...)
			d.mask.xor(block, data[:ivSize], 0, hdr[ivSize:])
		}
		reportRates(b, cpu)
	})
	// With session keys: unmask, AES-GCM open and message decoding.
	b.Run("message decrypted", func(b *testing.B) {
		d := NewDecoder([]*ecdsa.PrivateKey{testKeyB}, 0)
		var key [sessionKeySize]byte
		copy(key[:], msg.bytes(b, "read-key"))
		d.st.addKey(sessionID{direction{testIDA, testIDB}, addrA, addrB}, key)
		run(b, d, datagram(addrA, addrB, msg.packet), true)
	})
	// A handshake with key recovery (ECDH, HKDF, id-signature check): rare, costly.
	b.Run("handshake decrypted", func(b *testing.B) {
		d := NewDecoder([]*ecdsa.PrivateKey{testKeyB}, 0)
		d.st.storeChallenge(testIDA, seenChallenge{data: hs.bytes(b, "whoareyou.challenge-data"), challengerAddr: addrB, challengerID: testIDB, hasChallengerID: true})
		d.AddNode(enode.NewV4(&testKeyA.PublicKey, addrA.Addr().AsSlice(), 0, int(addrA.Port())))
		run(b, d, datagram(addrA, addrB, hs.packet), true)
	})
	// Worst case: a non-discv5 datagram tried against every known ID.
	for _, known := range []int{16, maxKnownIDs} {
		b.Run(fmt.Sprintf("not discv5, %d known IDs", known), func(b *testing.B) {
			d := NewDecoder([]*ecdsa.PrivateKey{testKeyB}, 0)
			for i := 0; i < known; i++ {
				d.AddKnownID(enode.ID{byte(i >> 8), byte(i), 0xee})
			}
			junk := bytes.Repeat([]byte{0x5a}, 120)
			run(b, d, datagram(addrA, netip.MustParseAddrPort("10.0.0.7:30303"), junk), false)
		})
	}
	// Junk to the local node's own address: only its own ID can unmask what it receives.
	b.Run(fmt.Sprintf("not discv5 to the local node, %d known IDs", maxKnownIDs), func(b *testing.B) {
		d := NewDecoder([]*ecdsa.PrivateKey{testKeyB}, 0)
		d.LearnAddr(testIDB, addrB)
		for i := 0; i < maxKnownIDs; i++ {
			d.AddKnownID(enode.ID{byte(i >> 8), byte(i), 0xee})
		}
		run(b, d, datagram(addrA, addrB, bytes.Repeat([]byte{0x5a}, 120)), false)
	})
}

// processCPU is the CPU time (user + system) the process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func startCPU() time.Duration { return processCPU() }

func reportRates(b *testing.B, cpuStart time.Duration) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pkts/s")
	if cpu := processCPU() - cpuStart; cpu > 0 {
		b.ReportMetric(float64(b.N)/cpu.Seconds(), "pkts/cpu-s")
	}
}
