package discv5

import (
	"bytes"
	"crypto/ecdsa"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/p2p/discover/v5wire"
	"github.com/ethereum/go-ethereum/p2p/enode"

	"github.com/discotrace/discotrace/decode/internal/disctest"
	"github.com/discotrace/discotrace/decode/packet"
	"github.com/discotrace/discotrace/decode/record"
)

// Keys of the discv5 spec test vectors: go-ethereum's testKeyA / testKeyB
// (p2p/discover/v5wire/encoding_test.go). Node A is the vectors' sender, B the recipient.
var (
	testKeyA = mustKey("eef77acb6c6a6eebc5b363a475ac583ec7eccdb42b6481424c60f59aa326547f")
	testKeyB = mustKey("66fb62bfbd66b9177a138c1e5cddbe4f7c30c343e94e68df8769459cb1cde628")
	testIDA  = enode.PubkeyToIDV4(&testKeyA.PublicKey)
	testIDB  = enode.PubkeyToIDV4(&testKeyB.PublicKey)

	addrA = netip.MustParseAddrPort("10.0.0.1:30303")
	addrB = netip.MustParseAddrPort("10.0.0.2:30303")
)

func mustKey(h string) *ecdsa.PrivateKey {
	k, err := crypto.HexToECDSA(h)
	if err != nil {
		panic(err)
	}
	return k
}

func hexBytes(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.TrimPrefix(s, "0x"))
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

// vector is one spec test vector file: its "# name = value" inputs and the packet.
type vector struct {
	in     map[string]string
	packet []byte
}

func readVector(t testing.TB, name string) vector {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", name+".txt"))
	if err != nil {
		t.Fatal(err)
	}
	v := vector{in: make(map[string]string)}
	var hexText strings.Builder
	for _, line := range strings.Split(string(raw), "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "#") {
			if k, val, ok := strings.Cut(strings.TrimPrefix(line, "#"), "="); ok {
				v.in[strings.TrimSpace(k)] = strings.TrimSpace(val)
			}
			continue
		}
		hexText.WriteString(line)
	}
	v.packet = hexBytes(t, hexText.String())
	return v
}

func (v vector) bytes(t testing.TB, key string) []byte {
	t.Helper()
	s, ok := v.in[key]
	if !ok {
		t.Fatalf("vector has no %q", key)
	}
	return hexBytes(t, s)
}

func datagram(src, dst netip.AddrPort, payload []byte) *record.Record {
	return &record.Record{Kind: record.Datagram, Time: time.Unix(1700000000, 0), Src: src, Dst: dst, Len: len(payload), Payload: payload}
}

func mustDecode(t *testing.T, d *Decoder, r *record.Record) packet.Packet {
	t.Helper()
	p, ok := d.Decode(r)
	if !ok {
		t.Fatalf("packet %s -> %s (%d bytes) not recognised as discv5", r.Src, r.Dst, r.Len)
	}
	if p.Proto != packet.ProtoV5 {
		t.Fatalf("proto %q, want %q", p.Proto, packet.ProtoV5)
	}
	return p
}

func checkIDs(t *testing.T, p packet.Packet, src *enode.ID, dst enode.ID) {
	t.Helper()
	if !p.HasDstID || p.DstID != dst {
		t.Errorf("dst-id %v (known %v), want %v", p.DstID, p.HasDstID, dst)
	}
	switch {
	case src == nil && p.HasSrcID:
		t.Errorf("src-id %v, want unknown", p.SrcID)
	case src != nil && (!p.HasSrcID || p.SrcID != *src):
		t.Errorf("src-id %v (known %v), want %v", p.SrcID, p.HasSrcID, *src)
	}
}

func checkErr(t *testing.T, p packet.Packet, want error) {
	t.Helper()
	if want == nil {
		if p.Err != nil {
			t.Errorf("error %q, want none", p.Err)
		}
		return
	}
	if !errors.Is(p.Err, want) {
		t.Errorf("error %v, want %q", p.Err, want)
	}
}

func checkPing(t *testing.T, p packet.Packet, reqID []byte, enrSeq uint64) {
	t.Helper()
	ping, ok := p.Msg.(*v5wire.Ping)
	if !ok {
		t.Fatalf("message %T, want *v5wire.Ping (err %v)", p.Msg, p.Err)
	}
	if !bytes.Equal(ping.ReqID, reqID) || ping.ENRSeq != enrSeq {
		t.Errorf("PING req-id %x enr-seq %d, want %x %d", ping.ReqID, ping.ENRSeq, reqID, enrSeq)
	}
	if !p.HasENRSeq || p.ENRSeq != enrSeq {
		t.Errorf("packet enr-seq %d (known %v), want %d", p.ENRSeq, p.HasENRSeq, enrSeq)
	}
}

// The spec's WHOAREYOU vector: header fields, authdata and the challenge-data that the
// handshake vectors use as HKDF salt.
func TestVectorWhoareyou(t *testing.T) {
	v := readVector(t, "v5.1-whoareyou")
	d := NewDecoder([]*ecdsa.PrivateKey{testKeyB}, 0)
	p := mustDecode(t, d, datagram(addrA, addrB, v.packet))
	if p.Kind != KindWhoareyou {
		t.Fatalf("kind %q, want %q", p.Kind, KindWhoareyou)
	}
	checkIDs(t, p, nil, testIDB) // WHOAREYOU carries no src-id and nothing was learned
	checkErr(t, p, nil)
	if want := v.bytes(t, "whoareyou.request-nonce"); !bytes.Equal(p.Nonce, want) {
		t.Errorf("nonce %x, want %x", p.Nonce, want)
	}
	if want := v.bytes(t, "whoareyou.id-nonce"); !bytes.Equal(p.IDNonce, want) {
		t.Errorf("id-nonce %x, want %x", p.IDNonce, want)
	}
	if !p.HasENRSeq || p.ENRSeq != 0 {
		t.Errorf("enr-seq %d (known %v), want 0", p.ENRSeq, p.HasENRSeq)
	}
	if want := v.bytes(t, "whoareyou.challenge-data"); !bytes.Equal(p.ChallengeData, want) {
		t.Errorf("challenge-data\n got %x\nwant %x", p.ChallengeData, want)
	}
	if len(v.packet) != MinPacketSize {
		t.Errorf("WHOAREYOU is %d bytes, want %d", len(v.packet), MinPacketSize)
	}
}

// The spec's ordinary message vector: decrypts with the given read-key, and without it
// still yields the header and says why it could not be decrypted.
func TestVectorPingMessage(t *testing.T) {
	v := readVector(t, "v5.1-ping-message")
	if got := enode.HexID(v.in["src-node-id"]); got != testIDA {
		t.Fatalf("vector src-node-id %v is not testKeyA's %v", got, testIDA)
	}
	rec := datagram(addrA, addrB, v.packet)

	t.Run("no session", func(t *testing.T) {
		d := NewDecoder([]*ecdsa.PrivateKey{testKeyB}, 0)
		p := mustDecode(t, d, rec)
		if p.Kind != KindMessage {
			t.Fatalf("kind %q, want %q", p.Kind, KindMessage)
		}
		checkIDs(t, p, &testIDA, testIDB)
		checkErr(t, p, ErrNoKey)
		if errors.Is(p.Err, ErrRandomPacket) {
			t.Errorf("a %d-byte message reported as a random packet", len(v.packet))
		}
		if p.Msg != nil {
			t.Errorf("message %v decoded without a key", p.Msg)
		}
		if want := v.bytes(t, "nonce"); !bytes.Equal(p.Nonce, want) {
			t.Errorf("nonce %x, want %x", p.Nonce, want)
		}
	})
	t.Run("session key known", func(t *testing.T) {
		d := NewDecoder(nil, 0) // no node key at all: the session key is enough
		var key [sessionKeySize]byte
		copy(key[:], v.bytes(t, "read-key"))
		d.st.addKey(sessionID{direction{testIDA, testIDB}, addrA, addrB}, key)
		d.AddKnownID(testIDB)
		p := mustDecode(t, d, rec)
		checkIDs(t, p, &testIDA, testIDB)
		checkErr(t, p, nil)
		checkPing(t, p, v.bytes(t, "ping.req-id"), 2)
	})
	t.Run("session set up at another address", func(t *testing.T) {
		d := NewDecoder([]*ecdsa.PrivateKey{testKeyB}, 0)
		var key [sessionKeySize]byte
		copy(key[:], v.bytes(t, "read-key"))
		d.st.addKey(sessionID{direction{testIDA, testIDB}, netip.MustParseAddrPort("10.0.0.9:30303"), addrB}, key)
		p := mustDecode(t, d, rec)
		checkErr(t, p, errOtherAddress)
		checkPing(t, p, v.bytes(t, "ping.req-id"), 2)
	})
	t.Run("stale session key", func(t *testing.T) {
		d := NewDecoder([]*ecdsa.PrivateKey{testKeyB}, 0)
		d.st.addKey(sessionID{direction{testIDA, testIDB}, addrA, addrB}, [sessionKeySize]byte{1})
		p := mustDecode(t, d, rec)
		checkErr(t, p, errSessionMismatch)
	})
}

// The two handshake vectors: authdata fields, key agreement from B's key with the
// captured challenge-data (the derived key must be the vector's read-key), the
// id-signature, the ENR, and the decrypted PING.
func TestVectorHandshake(t *testing.T) {
	for _, tc := range []struct {
		name    string
		withENR bool
	}{
		{"v5.1-ping-handshake", false},
		{"v5.1-ping-handshake-enr", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := readVector(t, tc.name)
			rec := datagram(addrA, addrB, v.packet)
			challenge := v.bytes(t, "whoareyou.challenge-data")
			newDecoder := func() *Decoder {
				d := NewDecoder([]*ecdsa.PrivateKey{testKeyB}, 0)
				// B sent the WHOAREYOU (from addrB) that A's handshake answers.
				d.st.storeChallenge(testIDA, seenChallenge{data: challenge, challengerAddr: addrB, challengerID: testIDB, hasChallengerID: true})
				if !tc.withENR {
					// Without an ENR in the handshake, A's key comes from a record known before.
					d.AddNode(enode.NewV4(&testKeyA.PublicKey, addrA.Addr().AsSlice(), 0, int(addrA.Port())))
				}
				return d
			}

			d := newDecoder()
			p := mustDecode(t, d, rec)
			if p.Kind != KindHandshake {
				t.Fatalf("kind %q, want %q", p.Kind, KindHandshake)
			}
			checkIDs(t, p, &testIDA, testIDB)
			checkErr(t, p, nil)
			if want := v.bytes(t, "nonce"); !bytes.Equal(p.Nonce, want) {
				t.Errorf("nonce %x, want %x", p.Nonce, want)
			}
			checkPing(t, p, v.bytes(t, "ping.req-id"), 1)

			// The authdata, as left unmasked in the decoder's scratch header.
			auth := d.hdr[staticEnd:]
			if got := enode.ID(auth[:32]); got != testIDA {
				t.Errorf("authdata src-id %v, want %v", got, testIDA)
			}
			if auth[32] != 64 || auth[33] != 33 {
				t.Errorf("sig-size %d eph-key-size %d, want 64 33", auth[32], auth[33])
			}
			if want := v.bytes(t, "ephemeral-pubkey"); !bytes.Equal(auth[34+64:34+64+33], want) {
				t.Errorf("ephemeral-pubkey %x, want %x", auth[34+64:34+64+33], want)
			}
			// The session key B derived for A's packets is the vector's read-key.
			ring, ok := d.st.sessions.Get(sessionID{direction{testIDA, testIDB}, addrA, addrB})
			if !ok || ring[0] == nil {
				t.Fatal("no session stored after the handshake")
			}
			if want := v.bytes(t, "read-key"); !bytes.Equal(ring[0].raw[:], want) {
				t.Errorf("initiator-key %x, want read-key %x", ring[0].raw, want)
			}
			if _, ok := d.st.sessions.Get(sessionID{direction{testIDB, testIDA}, addrB, addrA}); !ok {
				t.Error("no recipient-key stored for B's replies")
			}

			if tc.withENR {
				if len(p.Records) != 1 || p.Records[0].ID() != testIDA {
					t.Fatalf("records %v, want A's ENR", p.Records)
				}
				if !p.HasENRSeq || p.ENRSeq != 1 { // PING's enr-seq and the record's are both 1
					t.Errorf("enr-seq %d, want 1", p.ENRSeq)
				}
			} else if len(p.Records) != 0 {
				t.Errorf("records %v, want none", p.Records)
			}

			if !tc.withENR { // with an ENR, the handshake's own record is authoritative
				t.Run("wrong initiator key", func(t *testing.T) {
					d := newDecoder()
					other := enode.NewV4(&mustKey(disctest.KeyC).PublicKey, nil, 0, 0)
					d.st.pubkeys.Put(testIDA, other.Pubkey())
					p := mustDecode(t, d, rec)
					checkErr(t, p, errBadIDSignature)
					checkErr(t, p, errBadHandshake)
					checkPing(t, p, v.bytes(t, "ping.req-id"), 1) // decrypted all the same
				})
			}
			t.Run("late handshake", func(t *testing.T) {
				d := NewDecoder([]*ecdsa.PrivateKey{testKeyB}, 0)
				d.st.storeChallenge(testIDA, seenChallenge{data: challenge, challengerAddr: addrB, challengerID: testIDB, hasChallengerID: true, sent: rec.Time.Add(-1001 * time.Millisecond)})
				p := mustDecode(t, d, rec)
				checkErr(t, p, errLateHandshake)
				checkPing(t, p, v.bytes(t, "ping.req-id"), 1)

				d = NewDecoder([]*ecdsa.PrivateKey{testKeyB}, 0)
				d.st.storeChallenge(testIDA, seenChallenge{data: challenge, challengerAddr: addrB, challengerID: testIDB, hasChallengerID: true, sent: rec.Time.Add(-time.Second)})
				checkErr(t, mustDecode(t, d, rec), nil) // exactly 1s is still in time
			})
			t.Run("handshake timeout of 2s", func(t *testing.T) {
				at := func(ago time.Duration) packet.Packet {
					d := NewDecoder([]*ecdsa.PrivateKey{testKeyB}, 2*time.Second)
					d.st.storeChallenge(testIDA, seenChallenge{data: challenge, challengerAddr: addrB, challengerID: testIDB, hasChallengerID: true, sent: rec.Time.Add(-ago)})
					return mustDecode(t, d, rec)
				}
				checkErr(t, at(1500*time.Millisecond), nil)
				late := at(2001 * time.Millisecond)
				checkErr(t, late, errLateHandshake)
				if late.Err == nil || !strings.Contains(late.Err.Error(), "more than 2s before") {
					t.Errorf("late handshake says %q, want the 2s it was given", late.Err)
				}
			})
			t.Run("challenge not captured", func(t *testing.T) {
				d := NewDecoder([]*ecdsa.PrivateKey{testKeyB}, 0)
				p := mustDecode(t, d, rec)
				checkErr(t, p, errNoChallenge)
				checkErr(t, p, ErrNoKey)
				checkIDs(t, p, &testIDA, testIDB)
			})
			t.Run("wrong challenge", func(t *testing.T) {
				d := NewDecoder([]*ecdsa.PrivateKey{testKeyB}, 0)
				bad := bytes.Clone(challenge)
				bad[len(bad)-1] ^= 0x80
				d.st.storeChallenge(testIDA, seenChallenge{data: bad, challengerAddr: addrB})
				p := mustDecode(t, d, rec)
				checkErr(t, p, errHandshakeDecrypt)
			})
			t.Run("recipient key unknown", func(t *testing.T) {
				d := NewDecoder(nil, 0)
				d.AddKnownID(testIDB)
				p := mustDecode(t, d, rec)
				checkErr(t, p, ErrNoKey)
				if errors.Is(p.Err, errInitiatorSide) {
					t.Error("A's key was not given, yet the error blames the initiator side")
				}
			})
			t.Run("initiator key only", func(t *testing.T) {
				d := NewDecoder([]*ecdsa.PrivateKey{testKeyA}, 0)
				d.AddKnownID(testIDB)
				p := mustDecode(t, d, rec)
				checkErr(t, p, errInitiatorSide)
			})
		})
	}
}

// Key agreement, ECDH and ID signature against the spec's crypto vectors (go-ethereum
// p2p/discover/v5wire/crypto_test.go).
func TestVectorCrypto(t *testing.T) {
	cdata := hexBytes(t, "000000000000000000000000000000006469736376350001010102030405060708090a0b0c00180102030405060708090a0b0c0d0e0f100000000000000000")
	t.Run("ecdh", func(t *testing.T) {
		priv := mustKey("fb757dc581730490a1d7a00deea65e9b1936924caaea8f44d476014856b68736")
		pub, err := decodeEphemeral(hexBytes(t, "039961e4c2356d61bedb83052c115d311acb3a96f5777296dcf297351130266231"))
		if err != nil {
			t.Fatal(err)
		}
		want := hexBytes(t, "033b11a2a1f214567e1537ce5e509ffd9b21373247f2a3ff6841f4976f53165e7e")
		if got := ecdh(priv, pub); !bytes.Equal(got, want) {
			t.Errorf("shared secret %x, want %x", got, want)
		}
	})
	t.Run("key derivation", func(t *testing.T) {
		eph := mustKey("fb757dc581730490a1d7a00deea65e9b1936924caaea8f44d476014856b68736")
		// Initiator side: ephemeral secret with B's static public key.
		keys, ok := deriveKeys(eph, &testKeyB.PublicKey, testIDA, testIDB, cdata)
		if !ok {
			t.Fatal("key derivation failed")
		}
		if want := hexBytes(t, "dccc82d81bd610f4f76d3ebe97a40571"); !bytes.Equal(keys.initiator[:], want) {
			t.Errorf("initiator-key %x, want %x", keys.initiator, want)
		}
		if want := hexBytes(t, "ac74bb8773749920b0d3a8881c173ec5"); !bytes.Equal(keys.recipient[:], want) {
			t.Errorf("recipient-key %x, want %x", keys.recipient, want)
		}
		// Recipient side, what the decoder does: B's static key with the ephemeral public key.
		again, ok := deriveKeys(testKeyB, &eph.PublicKey, testIDA, testIDB, cdata)
		if !ok || again != keys {
			t.Errorf("recipient-side keys %x differ from initiator-side %x", again, keys)
		}
	})
	t.Run("id signature", func(t *testing.T) {
		key := mustKey("fb757dc581730490a1d7a00deea65e9b1936924caaea8f44d476014856b68736")
		destID := enode.HexID("0xbbbb9d047f0488c0b5a93c1c3f2d8bafc7c8ff337024a55434a0d0555de64db9")
		ephPub := hexBytes(t, "039961e4c2356d61bedb83052c115d311acb3a96f5777296dcf297351130266231")
		sig := hexBytes(t, "94852a1e2318c4e5e9d422c98eaf19d1d90d876b29cd06ca7cb7546d0fff7b484fe86c09a064fe72bdbef73ba8e9c34df0cd2b53e9d65528c2c7f336d5dfc6e6")
		if !verifyIDSignature(&key.PublicKey, sig, cdata, ephPub, destID) {
			t.Error("the spec's id-signature does not verify")
		}
		if verifyIDSignature(&key.PublicKey, sig, cdata, ephPub, testIDA) {
			t.Error("the id-signature verifies for another recipient")
		}
	})
}

// Masking must match cipher.NewCTR across block boundaries and counter carries.
func TestMaskMatchesCTR(t *testing.T) {
	block := newMaskBlock(testIDB)
	for _, iv := range [][]byte{
		make([]byte, 16),
		bytes.Repeat([]byte{0xff}, 16),
		append(bytes.Repeat([]byte{0}, 8), bytes.Repeat([]byte{0xff}, 8)...),
	} {
		for _, off := range []int{0, 5, 16, 23, 31, 32} {
			buf := make([]byte, 300)
			var m headerMask
			m.xor(block, iv, off, buf[off:])
			want := make([]byte, 300)
			stdCTR(block, iv, want)
			if !bytes.Equal(buf[off:], want[off:]) {
				t.Fatalf("iv %x offset %d: keystream differs from cipher.NewCTR", iv, off)
			}
		}
	}
}

func TestNotDiscv5(t *testing.T) {
	d := NewDecoder([]*ecdsa.PrivateKey{testKeyB}, 0)
	d.AddKnownID(testIDA)
	v := readVector(t, "v5.1-ping-message")
	for name, payload := range map[string][]byte{
		"empty":           nil,
		"62 bytes":        v.packet[:62],
		"zeros":           make([]byte, 200),
		"masked for C":    remask(v.packet, testIDB, enode.ID{0xcc}),
		"other protocol":  remask(withByte(remask(v.packet, testIDB, enode.ID{}), 16, 'X'), enode.ID{}, testIDB),
		"discv4-ish ping": append(bytes.Repeat([]byte{0xab}, 97), 0x01, 0xc0),
	} {
		if p, ok := d.Decode(datagram(addrA, addrB, payload)); ok {
			t.Errorf("%s: decoded as discv5: %+v", name, p)
		}
	}
	if _, ok := d.Decode(&record.Record{Kind: record.ICMP, Payload: v.packet, Len: len(v.packet)}); ok {
		t.Error("an ICMP record decoded as discv5")
	}
}

// Broken headers still come back as discv5 (the protocol-id unmasked) with a named error.
func TestMalformedHeaders(t *testing.T) {
	v := readVector(t, "v5.1-ping-message")
	plain := remask(v.packet, testIDB, enode.ID{})
	for _, tc := range []struct {
		name string
		edit func([]byte) []byte // on the unmasked packet
		want error
	}{
		{"version 2", func(b []byte) []byte { return withByte(b, 23, 2) }, errBadVersion},
		{"flag 3", func(b []byte) []byte { return withByte(b, 24, 3) }, errBadFlag},
		{"authsize beyond packet", func(b []byte) []byte { return withByte(b, 37, 0xff) }, errAuthSize},
		{"message authsize 31", func(b []byte) []byte { return withByte(b, 38, 31) }, errAuthSize},
		{"too short", func(b []byte) []byte { return b[:staticEnd+40] }, errTooShort},
		{"whoareyou authsize 32", func(b []byte) []byte { return withByte(b, 24, flagWhoareyou) }, errAuthSize},
		{"handshake sizes beyond authdata", func(b []byte) []byte { return withByte(b, 24, flagHandshake) }, errAuthSize},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := NewDecoder([]*ecdsa.PrivateKey{testKeyB}, 0)
			pkt := remask(tc.edit(bytes.Clone(plain)), enode.ID{}, testIDB)
			p := mustDecode(t, d, datagram(addrA, addrB, pkt))
			checkErr(t, p, tc.want)
			if !p.HasDstID || p.DstID != testIDB || len(p.Nonce) != 12 {
				t.Errorf("header fields lost: %+v", p)
			}
		})
	}
	t.Run("truncated capture", func(t *testing.T) {
		d := NewDecoder([]*ecdsa.PrivateKey{testKeyB}, 0)
		r := datagram(addrA, addrB, v.packet[:80])
		r.Len = len(v.packet)
		p := mustDecode(t, d, r)
		checkErr(t, p, ErrTruncated)
		checkIDs(t, p, &testIDA, testIDB)
	})
}

// stdCTR is the reference keystream: the standard library's CTR.
func stdCTR(block interface{ Encrypt(dst, src []byte) }, iv, buf []byte) {
	ctr := make([]byte, 16)
	copy(ctr, iv)
	ks := make([]byte, 16)
	for off := 0; off < len(buf); off += 16 {
		block.Encrypt(ks, ctr)
		for i := 0; i < 16 && off+i < len(buf); i++ {
			buf[off+i] ^= ks[i]
		}
		for i := 15; i >= 0; i-- {
			ctr[i]++
			if ctr[i] != 0 {
				break
			}
		}
	}
}

// remask removes the header mask of from and applies the one of to; the zero ID
// stands for "no mask" (a plain header).
func remask(pkt []byte, from, to enode.ID) []byte {
	out := bytes.Clone(pkt)
	var m headerMask
	if from != (enode.ID{}) {
		m.xor(newMaskBlock(from), out[:ivSize], 0, out[ivSize:staticEnd])
		xorAuthdata(&m, from, out)
	}
	if to != (enode.ID{}) {
		xorAuthdata(&m, to, out) // reads the size while the static header is plain
		m.xor(newMaskBlock(to), out[:ivSize], 0, out[ivSize:staticEnd])
	}
	return out
}

// xorAuthdata applies id's keystream to the authdata whose size the (plain) static
// header declares, as far as the packet goes.
func xorAuthdata(m *headerMask, id enode.ID, pkt []byte) {
	size := int(binary.BigEndian.Uint16(pkt[staticEnd-2 : staticEnd]))
	end := min(staticEnd+size, len(pkt))
	m.xor(newMaskBlock(id), pkt[:ivSize], staticEnd-ivSize, pkt[staticEnd:end])
}

func withByte(b []byte, i int, v byte) []byte {
	out := bytes.Clone(b)
	out[i] = v
	return out
}

// The candidate IDs are bounded: beyond the limit, the oldest go first (the maps of
// the state are bounded.Map, tested in its package).
func TestStateBounds(t *testing.T) {
	var k knownIDs
	k.index = make(map[enode.ID]int)
	id := func(i int) enode.ID { return enode.ID{byte(i >> 8), byte(i), 1} }
	for i := 0; i < maxKnownIDs+5; i++ {
		k.add(id(i))
	}
	k.add(id(maxKnownIDs)) // already known: no change
	if len(k.ids) != maxKnownIDs || len(k.index) != maxKnownIDs {
		t.Fatalf("%d candidates (%d indexed), want %d", len(k.ids), len(k.index), maxKnownIDs)
	}
	for i := 0; i < 5; i++ {
		if _, ok := k.index[id(i)]; ok {
			t.Errorf("oldest ID %d still a candidate", i)
		}
	}
	if got := k.newest(0).id; got != id(maxKnownIDs+4) {
		t.Errorf("newest candidate %v, want the last added", got)
	}
	if got := k.newest(maxKnownIDs - 1).id; got != id(5) {
		t.Errorf("oldest candidate %v, want ID 5", got)
	}
	for i, c := range k.ids {
		if k.index[c.id] != i {
			t.Fatalf("index of %v is %d, want %d", c.id, k.index[c.id], i)
		}
	}
}

// What reaches a local node's address is unmasked with local IDs only: the node itself
// could not read a packet masked for another ID, so that one is not discv5 there (and
// costs one AES block, not one per known ID). Sent to any other address, the same bytes
// unmask with the known ID they were masked for.
func TestLocalAddressUnmasksWithLocalIDsOnly(t *testing.T) {
	v := readVector(t, "v5.1-ping-message") // masked for B
	d := NewDecoder([]*ecdsa.PrivateKey{testKeyA}, 0)
	d.LearnAddr(testIDA, addrA)
	d.AddKnownID(testIDB)
	if p, ok := d.Decode(datagram(addrB, addrA, v.packet)); ok {
		t.Fatalf("a packet for B decoded at A's address: %+v", p)
	}
	other := netip.MustParseAddrPort("10.0.0.9:30303")
	if p, ok := d.Decode(datagram(addrA, other, v.packet)); !ok || p.DstID != testIDB {
		t.Fatalf("not unmasked with the known ID at another address: %+v %v", p, ok)
	}
}
