package main

import (
	"fmt"
	"io"

	"github.com/ethereum/go-ethereum/p2p/enode"

	"github.com/discotrace/discotrace/decode"
	"github.com/discotrace/discotrace/decode/live"
	"github.com/discotrace/discotrace/decode/packet"
	"github.com/discotrace/discotrace/decode/result"
)

// identityWatchAfter is how many discovery packets trace decodes before it warns about a
// local identity none of them matched: a node sends within its first few exchanges.
const identityWatchAfter = 1000

// identityWatch counts the discovery packets of a stream and warns once, when enough have
// been decoded or the stream ends, about each identity flag (--nodekey, --node-id, --enr)
// that matched none: a key of another node decrypts nothing, and silently.
type identityWatch struct {
	dec     *decode.Decoder
	ids     []flaggedID
	w       io.Writer
	after   uint64 // packets after which to check; 0: only at the end
	packets uint64
	checked bool
}

// flaggedID is a local node ID and the flag that gave it, as the warning names it.
type flaggedID struct {
	flag string // "--nodekey #1"
	id   enode.ID
	key  bool // given as a key: it would decrypt
}

// newIdentityWatch watches the local nodes of id, whose flags gave them in order; nil when
// there are none.
func newIdentityWatch(dec *decode.Decoder, id decode.Identity, w io.Writer, after uint64) *identityWatch {
	var ids []flaggedID
	for i, k := range id.Keys {
		ids = append(ids, flaggedID{fmt.Sprintf("--nodekey #%d", i+1), enode.PubkeyToIDV4(&k.PublicKey), true})
	}
	for i, n := range id.IDs {
		ids = append(ids, flaggedID{fmt.Sprintf("--node-id #%d", i+1), n, false})
	}
	for i, n := range id.Nodes {
		ids = append(ids, flaggedID{fmt.Sprintf("--enr #%d", i+1), n.ID(), false})
	}
	if len(ids) == 0 {
		return nil
	}
	return &identityWatch{dec: dec, ids: ids, w: w, after: after}
}

// observe counts ev if it is a decoded discovery packet. It runs where the decoder does
// (its emit callback), which may be queried there.
func (iw *identityWatch) observe(ev result.Event) {
	if iw == nil {
		return
	}
	obs, ok := ev.(*result.Observation)
	if !ok || obs.Packet == nil || obs.Packet.Proto == packet.ProtoUnknown || iw.checked {
		return
	}
	iw.packets++
	if iw.packets == iw.after {
		iw.check(fmt.Sprintf("in the first %d discovery packets", iw.packets))
	}
}

// finish checks at the end of the stream, unless done already or no packet came (then
// nothing could match, and the stream's emptiness is the news).
func (iw *identityWatch) finish(where string) {
	if iw != nil && !iw.checked && iw.packets > 0 {
		n := fmt.Sprintf("%d discovery packets", iw.packets)
		if iw.packets == 1 {
			n = "1 discovery packet"
		}
		iw.check(fmt.Sprintf("%s (%s)", where, n))
	}
}

func (iw *identityWatch) check(where string) {
	iw.checked = true
	for _, x := range iw.ids {
		if iw.dec.LocalIDSeen(x.id) {
			continue
		}
		what := "the ID or record of the node whose traffic this is (geth logs it at start: self=enode://...)"
		if x.key {
			what = "the key of the node whose traffic this is (geth keeps it in <datadir>/geth/nodekey)"
		}
		fmt.Fprintf(iw.w, "discotrace: %s (node %x) matches no node %s: no packet came from or went to it, so it changes nothing; give %s\n",
			x.flag, x.id[:4], where, what)
	}
}

// output is out with the packets it is given counted.
func (iw *identityWatch) output(out live.Output) live.Output {
	if iw == nil {
		return out
	}
	return identityWatchOutput{out, iw}
}

type identityWatchOutput struct {
	live.Output
	iw *identityWatch
}

func (o identityWatchOutput) Write(ev result.Event) error {
	o.iw.observe(ev)
	return o.Output.Write(ev)
}
