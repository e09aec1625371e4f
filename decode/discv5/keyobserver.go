package discv5

import (
	"github.com/ethereum/go-ethereum/p2p/discover/v5wire"
	"github.com/ethereum/go-ethereum/p2p/enode"
)

// KeyObserver is told the secrets the decoder learns, so that another tool (a key log
// for Wireshark) can decode what this decoder decoded. It is never told a node key.
type KeyObserver interface {
	// LocalID is called once for each local node (keyed or pinned): headers sent to
	// it unmask with its ID.
	LocalID(id enode.ID)
	// SessionKeys is called for each handshake whose keys the decoder derived.
	SessionKeys(s SessionKeys)
}

// SessionKeys are one handshake's session: who started it, its nonce (the nonce of the
// HANDSHAKE packet, whose message the initiator key encrypts) and both keys.
type SessionKeys struct {
	Nonce                      v5wire.Nonce
	Initiator, Recipient       enode.ID
	InitiatorKey, RecipientKey [sessionKeySize]byte
}

// SetKeyObserver makes o the observer of the keys derived from now on, and tells it the
// local node IDs known so far (and, later, each one added).
func (d *Decoder) SetKeyObserver(o KeyObserver) {
	d.keyObserver = o
	if o == nil {
		return
	}
	for _, l := range d.locals {
		o.LocalID(l.id)
	}
	for _, p := range d.pinned {
		o.LocalID(p.id)
	}
}
