package discv5

import (
	"bytes"
	"crypto/ecdsa"
	"encoding/binary"
	"fmt"

	"github.com/ethereum/go-ethereum/p2p/discover/v5wire"
	"github.com/ethereum/go-ethereum/p2p/enode"
	"github.com/ethereum/go-ethereum/p2p/enr"
	"github.com/ethereum/go-ethereum/rlp"

	"github.com/discotrace/discotrace/decode/internal/addrkey"
	"github.com/discotrace/discotrace/decode/packet"
	"github.com/discotrace/discotrace/decode/record"
)

func (d *Decoder) decodeWhoareyou(p *packet.Packet, r *record.Record, nonce v5wire.Nonce, auth, hdr []byte) {
	if len(auth) != whoareyouAuthSize {
		p.Err = fmt.Errorf("%w: %d for a WHOAREYOU, want %d", errAuthSize, len(auth), whoareyouAuthSize)
		return
	}
	p.ChallengeData = bytes.Clone(hdr)
	p.IDNonce = p.ChallengeData[staticEnd : staticEnd+16 : staticEnd+16] // shares the one allocation
	p.HasENRSeq, p.ENRSeq = true, binary.BigEndian.Uint64(auth[16:24])

	// WHOAREYOU has no src-id. It echoes the nonce of the packet it answers, whose
	// recipient is the challenger; failing that, the node last seen at its address.
	if sent, ok := d.st.nonces.Get(nonce); ok && sent.src == p.DstID {
		p.SrcID, p.HasSrcID = sent.dst, true
	} else if id, ok := d.st.addrs.Get(addrkey.Of(normalize(r.Src))); ok {
		p.SrcID, p.HasSrcID = id, true
	}
	d.st.storeChallenge(p.DstID, seenChallenge{
		data:            p.ChallengeData,
		challengerAddr:  normalize(r.Src),
		challengerID:    p.SrcID,
		hasChallengerID: p.HasSrcID,
		sent:            r.Time,
	})
}

func (d *Decoder) decodeHandshake(p *packet.Packet, r *record.Record, dst enode.ID, nonce v5wire.Nonce, auth, hdr, msg []byte, truncated bool) {
	if len(auth) < handshakeAuthHead {
		p.Err = fmt.Errorf("%w: %d for a handshake, want at least %d", errAuthSize, len(auth), handshakeAuthHead)
		return
	}
	src := enode.ID(auth[:32])
	p.SrcID, p.HasSrcID = src, true
	d.learnSender(r.Src, src, dst, nonce)
	sigSize, keySize := int(auth[32]), int(auth[33])
	if handshakeAuthHead+sigSize+keySize > len(auth) {
		p.Err = fmt.Errorf("%w: signature (%d) and ephemeral key (%d) exceed the handshake authdata (%d)", errAuthSize, sigSize, keySize, len(auth))
		return
	}
	sig := auth[handshakeAuthHead : handshakeAuthHead+sigSize]
	ephKey := auth[handshakeAuthHead+sigSize : handshakeAuthHead+sigSize+keySize]
	var node *enode.Node
	if rec := auth[handshakeAuthHead+sigSize+keySize:]; len(rec) > 0 {
		n, err := decodeRecord(rec, src)
		if err != nil {
			p.Err = err
		} else {
			node = n
			p.Records = []*enode.Node{n}
			p.HasENRSeq, p.ENRSeq = true, n.Seq()
			d.learnNode(n)
		}
	}
	if truncated {
		setErr(p, ErrTruncated)
		return
	}

	challenges := d.st.challengesFor(src, dst, normalize(r.Dst))
	recipient := d.local(dst)
	if recipient == nil {
		// No key to decrypt with, but the recipient's checks that need only public data
		// can still be made.
		d.checkHandshakePublic(p, r, d.pubkey(src, node), sig, ephKey, dst, challenges)
		// The keys cannot be derived, and whatever session the two had is replaced.
		d.st.dropSession(src, dst, normalize(r.Src), normalize(r.Dst))
		if d.local(src) != nil {
			setErr(p, errInitiatorSide)
			d.st.localInitiated.Put(direction{src, dst}, true)
		} else {
			d.forgetLocalInitiated(src, dst)
			setErr(p, ErrNoKey)
		}
		return
	}
	eph, err := decodeEphemeral(ephKey)
	if err != nil {
		d.st.dropSession(src, dst, normalize(r.Src), normalize(r.Dst))
		setErr(p, err)
		return
	}
	if len(challenges) == 0 {
		d.st.dropSession(src, dst, normalize(r.Src), normalize(r.Dst))
		setErr(p, errNoChallenge)
		return
	}
	for _, c := range challenges {
		keys, ok := deriveKeys(recipient.key, eph, src, dst, c.data)
		if !ok {
			continue
		}
		pt, err := newAEAD(keys.initiator).Open(nil, nonce[:], msg, hdr)
		if err != nil {
			continue
		}
		d.st.storeSession(src, dst, normalize(r.Src), normalize(r.Dst), keys)
		if d.keyObserver != nil {
			d.keyObserver.SessionKeys(SessionKeys{Nonce: nonce, Initiator: src, Recipient: dst, InitiatorKey: keys.initiator, RecipientKey: keys.recipient})
		}
		d.forgetLocalInitiated(src, dst)
		// c decrypted the message: it is the challenge the handshake answers. The
		// id-signature is checked when the initiator's key is known (its ENR in the
		// handshake, a record seen before, or a local key).
		if pub := d.pubkey(src, node); pub != nil && !verifyIDSignature(pub, sig, c.data, ephKey, dst) {
			setErr(p, errBadIDSignature)
		}
		if !d.pending(c, r) {
			setErr(p, d.lateHandshake)
		}
		d.setMessage(p, pt)
		return
	}
	d.st.dropSession(src, dst, normalize(r.Src), normalize(r.Dst))
	setErr(p, errHandshakeDecrypt)
}

// localInitiatedPair reports whether the last handshake between a and b that the
// capture shows was sent by a local node.
func (d *Decoder) localInitiatedPair(a, b enode.ID) bool {
	_, ab := d.st.localInitiated.Get(direction{a, b})
	_, ba := d.st.localInitiated.Get(direction{b, a})
	return ab || ba
}

func (d *Decoder) forgetLocalInitiated(a, b enode.ID) {
	d.st.localInitiated.Delete(direction{a, b})
	d.st.localInitiated.Delete(direction{b, a})
}

// checkHandshakePublic makes, for a handshake this decoder cannot decrypt, the
// recipient's checks that need no private key: the
// id-signature must prove the initiator's key (pub) over the challenge the handshake
// answers, and that challenge must still be pending (for the handshake timeout).
// challenges are the candidates, newest first. Without decryption to tell which one the
// handshake answers, only the signature can name it, so without pub nothing is claimed;
// and a signature that fits no candidate is called bad only while the newest one is
// pending: an older one is not what a HANDSHAKE now answers, and the one it does answer
// may be missing from the capture. One ECDSA verification per candidate, usually one.
func (d *Decoder) checkHandshakePublic(p *packet.Packet, r *record.Record, pub *ecdsa.PublicKey, sig, ephKey []byte, dst enode.ID, challenges []*seenChallenge) {
	if len(challenges) == 0 || pub == nil {
		return
	}
	var answers *seenChallenge
	for _, c := range challenges {
		if verifyIDSignature(pub, sig, c.data, ephKey, dst) {
			answers = c
			break
		}
	}
	switch {
	case answers == nil && d.pending(challenges[0], r):
		setErr(p, errBadIDSignature)
	case answers != nil && !d.pending(answers, r):
		setErr(p, d.lateHandshake)
	}
}

// pending reports whether challenge c still waits for its HANDSHAKE at r's time (a
// challenge without a time, or a record without one, counts as pending).
func (d *Decoder) pending(c *seenChallenge, r *record.Record) bool {
	return c.sent.IsZero() || r.Time.IsZero() || r.Time.Sub(c.sent) <= d.handshakeTimeout
}

// decodeRecord decodes and verifies a handshake's ENR, which must be the sender's.
func decodeRecord(b []byte, want enode.ID) (*enode.Node, error) {
	var rec enr.Record
	if err := rlp.DecodeBytes(b, &rec); err != nil {
		return nil, fmt.Errorf("%w: %v", errBadRecord, err)
	}
	n, err := enode.New(enode.ValidSchemes, &rec)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errBadRecord, err)
	}
	if n.ID() != want {
		return nil, fmt.Errorf("%w: record of node %s in a handshake from %s", errBadRecord, n.ID().TerminalString(), want.TerminalString())
	}
	return n, nil
}
