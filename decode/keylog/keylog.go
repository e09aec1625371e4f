// Package keylog writes the discv5 key log: what a decoder learned that lets Wireshark
// (wireshark/discotrace.lua) unmask headers and decrypt messages, like TLS's
// SSLKEYLOGFILE. A key log is secret: anyone holding it reads the sessions it lists.
// It never holds a node's private key.
//
// The format is text, one entry per line, fields separated by one space, hex lowercase:
//
//	# comment
//	DISCV5_LOCAL_ID <node-id, 64 hex>
//	DISCV5_SESSION <handshake-nonce, 24 hex> <initiator-id> <recipient-id> <initiator-key, 32 hex> <recipient-key, 32 hex>
//
// DISCV5_LOCAL_ID names a local node: headers sent to it are masked with its ID's first
// 16 bytes. DISCV5_SESSION is one handshake the decoder derived keys for: the
// initiator-key encrypts what the initiator sends (its HANDSHAKE, whose nonce is given,
// and its later MESSAGEs), the recipient-key what the recipient sends back.
package keylog

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"io"
	"sync"

	"github.com/ethereum/go-ethereum/p2p/enode"

	"github.com/discotrace/discotrace/decode/discv5"
)

// maxRemembered bounds the entries remembered to write each only once (a re-read of a
// datagram derives its keys again); beyond it the memory starts over, which at worst
// writes an entry twice.
const maxRemembered = 1 << 16

// Writer is a discv5.KeyObserver that writes the key log to w. Each entry is flushed
// as it is written, so that Wireshark reading a live key log sees it. The first write
// error stops writing and is kept for Err.
type Writer struct {
	mu      sync.Mutex
	w       *bufio.Writer
	written map[string]bool
	err     error
}

// NewWriter returns a Writer on w and writes the format's header comment.
func NewWriter(w io.Writer) *Writer {
	kw := &Writer{w: bufio.NewWriter(w), written: make(map[string]bool)}
	kw.line("# discotrace discv5 key log: SECRET, it decrypts the sessions listed. Format: wireshark/discotrace.lua")
	return kw
}

// LocalID writes a DISCV5_LOCAL_ID line.
func (kw *Writer) LocalID(id enode.ID) {
	kw.line("DISCV5_LOCAL_ID " + hex.EncodeToString(id[:]))
}

// SessionKeys writes a DISCV5_SESSION line.
func (kw *Writer) SessionKeys(s discv5.SessionKeys) {
	kw.line(fmt.Sprintf("DISCV5_SESSION %x %x %x %x %x", s.Nonce[:], s.Initiator[:], s.Recipient[:], s.InitiatorKey[:], s.RecipientKey[:]))
}

// Err returns the first write error, if any.
func (kw *Writer) Err() error {
	kw.mu.Lock()
	defer kw.mu.Unlock()
	return kw.err
}

func (kw *Writer) line(s string) {
	kw.mu.Lock()
	defer kw.mu.Unlock()
	if kw.err != nil || kw.written[s] {
		return
	}
	if len(kw.written) >= maxRemembered {
		clear(kw.written)
	}
	kw.written[s] = true
	if _, err := kw.w.WriteString(s + "\n"); err != nil {
		kw.err = err
		return
	}
	kw.err = kw.w.Flush()
}

var _ discv5.KeyObserver = (*Writer)(nil)
