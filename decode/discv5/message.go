package discv5

import (
	"fmt"
	"net/netip"

	"github.com/ethereum/go-ethereum/p2p/discover/v5wire"
	"github.com/ethereum/go-ethereum/p2p/enode"

	"github.com/discotrace/discotrace/decode/packet"
	"github.com/discotrace/discotrace/decode/record"
)

// decryptMessage opens an ordinary message with the keys of its direction: those of
// the session between these two endpoints, else those the two nodes set up at other
// endpoints (the message is then shown, with errOtherAddress: its recipient, if it
// is go-ethereum, will not find that session and answers WHOAREYOU).
func (d *Decoder) decryptMessage(p *packet.Packet, r *record.Record, src, dst enode.ID, nonce v5wire.Nonce, hdr, msg []byte) {
	sid := sessionID{direction{src, dst}, normalize(r.Src), normalize(r.Dst)}
	ring, haveKeys := d.st.sessions.Get(sid)
	if haveKeys && d.openWith(p, ring, nil, nonce, hdr, msg) {
		return
	}
	if pair, ok := d.st.pairs.Get(sid.dir); ok {
		haveKeys = true
		if d.openWith(p, pair, ring, nonce, hdr, msg) {
			setErr(p, errOtherAddress)
			return
		}
	}
	switch {
	case len(msg) == randomMessageSize:
		p.Err = ErrRandomPacket
	case haveKeys:
		p.Err = errSessionMismatch
	default:
		p.Err = d.noKeyError(src, dst)
	}
}

// noKeyError says why a message between src and dst has no key: the session was set up
// by a local node's HANDSHAKE, or, as far as the capture shows, before it began.
func (d *Decoder) noKeyError(src, dst enode.ID) error {
	if d.localInitiatedPair(src, dst) {
		return errLocalSession
	}
	return ErrNoKey
}

// reexplain gives a MESSAGE decoded earlier without a key the reason the decoder knows
// now: datagrams decoded late (a HANDSHAKE held until its recipient's ID was learned)
// can show whose session it is.
func (d *Decoder) Reexplain(p *packet.Packet) {
	if p.Proto == packet.ProtoV5 && p.Kind == KindMessage && p.Err == ErrNoKey {
		p.Err = d.noKeyError(p.SrcID, p.DstID)
	}
}

// openWith tries the keys of ring (skipping those of tried) and decodes the message
// with the first that opens it.
func (d *Decoder) openWith(p *packet.Packet, ring, tried *keyRing, nonce v5wire.Nonce, hdr, msg []byte) bool {
	for _, k := range ring {
		if k == nil || tried.has(k) {
			continue
		}
		if pt, err := k.aead.Open(nil, nonce[:], msg, hdr); err == nil {
			d.setMessage(p, pt)
			return true
		}
	}
	return false
}

// setMessage decodes a decrypted message (type byte || RLP) with go-ethereum's
// v5wire and copies what the tracker needs into p.
func (d *Decoder) setMessage(p *packet.Packet, pt []byte) {
	if len(pt) == 0 {
		setErr(p, fmt.Errorf("%w: empty plaintext", errBadMessage))
		return
	}
	msg, err := v5wire.DecodeMessage(pt[0], pt[1:])
	if err != nil {
		setErr(p, fmt.Errorf("%w: %v", errBadMessage, err))
		return
	}
	p.Msg = msg
	switch m := msg.(type) {
	case *v5wire.Ping:
		p.HasENRSeq, p.ENRSeq = true, m.ENRSeq
	case *v5wire.Pong:
		p.HasENRSeq, p.ENRSeq = true, m.ENRSeq
		if ip, ok := netip.AddrFromSlice(m.ToIP); ok {
			p.To = netip.AddrPortFrom(ip.Unmap(), m.ToPort)
		}
	case *v5wire.Nodes:
		p.HasNodes, p.Nodes = true, len(m.Nodes)
		for _, rec := range m.Nodes {
			n, err := enode.New(enode.ValidSchemes, rec)
			if err != nil {
				continue // an invalid record is the sender's problem; its count stays in Nodes
			}
			p.Records = append(p.Records, n)
			d.learnNode(n)
		}
	}
}

func setErr(p *packet.Packet, err error) {
	if p.Err == nil {
		p.Err = err
	}
}
