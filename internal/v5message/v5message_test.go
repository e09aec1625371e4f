package v5message

import (
	"net/netip"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common/mclock"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/p2p/discover/v5wire"
	"github.com/ethereum/go-ethereum/p2p/enode"

	"github.com/discotrace/discotrace/decode"
	"github.com/discotrace/discotrace/decode/record"
	"github.com/discotrace/discotrace/decode/result"
	"github.com/discotrace/discotrace/ndjson"
)

// The local node's own go-ethereum codec reads a built packet as a message from the
// sender it names, one it has no session for (so it would answer WHOAREYOU), and the
// project's decoder, given the local node's ID, shows it as a discv5 MESSAGE from that ID.
func TestMessageIsAMaskedDiscv5MessageFromSrc(t *testing.T) {
	key, err := crypto.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	db, err := enode.OpenDB("")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	local := enode.NewLocalNode(db, key)
	b := NewBuilder(1)
	src := b.NodeID()
	p, err := b.Message(local.ID(), src, 256)
	if err != nil {
		t.Fatal(err)
	}
	if len(p) != 256 {
		t.Fatalf("packet of %d bytes, want 256", len(p))
	}

	gethFrom, _, packet, err := v5wire.NewCodec(local, key, mclock.System{}, nil).Decode(p, "10.0.0.1:30303")
	if err != nil {
		t.Fatalf("go-ethereum cannot decode the packet: %v", err)
	}
	if _, ok := packet.(*v5wire.Unknown); !ok || gethFrom != src {
		t.Errorf("go-ethereum reads %T from %v, want an undecryptable message (*v5wire.Unknown) from %v", packet, gethFrom, src)
	}

	dec := decode.NewDecoder(decode.Config{Identity: decode.Identity{IDs: []enode.ID{local.ID()}}})
	var disc *ndjson.Disc
	dec.Feed(&record.Record{
		Kind: record.Datagram, Dir: record.DirIn, Time: time.Now(), Len: len(p), Payload: p,
		Src: netip.MustParseAddrPort("10.0.0.1:30303"), Dst: netip.MustParseAddrPort("10.0.0.2:30303"),
	}, func(res result.Event) {
		if ev := ndjson.FromResult(res, false); ev.Disc != nil {
			disc = ev.Disc
		}
	})
	if disc == nil || disc.Proto != "discv5" || disc.Kind != "MESSAGE" || disc.SrcID != src.String() {
		t.Errorf("decoder shows %+v, want a discv5 MESSAGE from %v", disc, src)
	}
}

func TestMessageRejectsSizesNoPacketHas(t *testing.T) {
	b := NewBuilder(1)
	for _, size := range []int{MinSize - 1, 1281} {
		if _, err := b.Message(enode.ID{}, enode.ID{}, size); err == nil {
			t.Errorf("size %d: no error", size)
		}
	}
}
