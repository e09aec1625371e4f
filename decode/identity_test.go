package decode

import (
	"crypto/ecdsa"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/p2p/enode"

	"github.com/discotrace/discotrace/decode/internal/disctest"
	"github.com/discotrace/discotrace/decode/result"
)

const (
	idKeyHex = "1111111111111111111111111111111111111111111111111111111111111111"
	idNodeID = "969b0a11b8a56bacf1ac18f219e7e376e7c213b7e7e7e46cc70a5dd086daff2a"
)

func TestParseNodeKey(t *testing.T) {
	dir := t.TempDir()
	nodekey := filepath.Join(dir, "nodekey") // geth's file: hex, no newline
	if err := os.WriteFile(nodekey, []byte(idKeyHex), 0o600); err != nil {
		t.Fatal(err)
	}
	withNewline := filepath.Join(dir, "nodekey.txt")
	if err := os.WriteFile(withNewline, []byte(idKeyHex+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	hexName := filepath.Join(dir, "cafe") // a file whose name is hex
	if err := os.WriteFile(hexName, []byte(idKeyHex), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	for _, in := range []string{idKeyHex, "0x" + idKeyHex, " " + idKeyHex + "\n", strings.ToUpper(idKeyHex), nodekey, withNewline, "cafe"} {
		key, err := ParseNodeKey(in)
		if err != nil {
			t.Fatalf("%q: %v", in, err)
		}
		if id := enode.PubkeyToIDV4(&key.PublicKey); id.String() != idNodeID {
			t.Fatalf("%q: id %s", in, id)
		}
	}
}

// A mistyped key must never come back in an error message, whole or in part.
func TestParseNodeKeyErrorsHideKeyMaterial(t *testing.T) {
	dir := t.TempDir()
	badFile := filepath.Join(dir, "nodekey")
	if err := os.WriteFile(badFile, []byte("abcdef0123456789zz"), 0o600); err != nil {
		t.Fatal(err)
	}
	zeroFile := filepath.Join(dir, "zero")
	if err := os.WriteFile(zeroFile, []byte(strings.Repeat("0", 64)), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		in     string
		want   error
		secret string
	}{
		{idKeyHex[:63], ErrNodeKeyHex, idKeyHex[:40]},                 // one character short
		{idKeyHex[:62] + "zz", ErrNodeKeyFile, idKeyHex[:40]},         // a typo: not hex, not a file
		{"deadbeef" + idKeyHex[8:60] + "g1h2", ErrNodeKeyFile, "dea"}, // same
		{strings.Repeat("0", 64), ErrNodeKeyBad, "0000"},              // not a valid scalar
		{"ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff", ErrNodeKeyBad, "ffff"},
		{badFile, ErrNodeKeyHex, "abcdef"},
		{zeroFile, ErrNodeKeyBad, "0000"},
		{filepath.Join(dir, "missing"), ErrNodeKeyFile, ""},
		// A key with a stray dot, slash or prefix looks like a path: named, but redacted.
		{idKeyHex + ".", ErrNodeKeyFile, idKeyHex[:32]},
		{idKeyHex + "/", ErrNodeKeyFile, idKeyHex[:32]},
		{"enode://" + idKeyHex, ErrNodeKeyFile, idKeyHex[:32]},
		{"/dev/zero", ErrNodeKeyFile, ""}, // read bounded, not to the end of memory
		// Typos split a key into shorter runs of hex: none may show.
		{"./" + idKeyHex[:31] + "g" + idKeyHex[32:], ErrNodeKeyFile, idKeyHex[:10]},
		{idKeyHex[:20] + "." + idKeyHex[21:40] + "." + idKeyHex[41:], ErrNodeKeyFile, idKeyHex[:10]},
	}
	for _, c := range cases {
		_, err := ParseNodeKey(c.in)
		if !errors.Is(err, c.want) {
			t.Errorf("%.10q...: error %v, want %v", c.in, err, c.want)
			continue
		}
		if c.secret != "" && strings.Contains(err.Error(), c.secret) {
			t.Errorf("error %q shows key material", err)
		}
	}
	// A path that does not exist is named: it is a path, not a key.
	_, err := ParseNodeKey(filepath.Join(dir, "missing"))
	if !strings.Contains(err.Error(), "missing") {
		t.Errorf("error %q does not name the file", err)
	}
}

// An enode URL with a typo is quoted by go-ethereum's parser; a key pasted into one
// must not come back.
func TestParseNodeIDErrorsHideKeyMaterial(t *testing.T) {
	_, err := ParseNodeID("enode://" + idKeyHex + idKeyHex + "@1.2.3.4:303x03")
	if !errors.Is(err, ErrNodeID) || strings.Contains(err.Error(), idKeyHex[:32]) {
		t.Fatalf("error %v", err)
	}
}

func TestParseNodeID(t *testing.T) {
	key, _ := crypto.HexToECDSA(idKeyHex)
	url := enode.NewV4(&key.PublicKey, []byte{10, 0, 0, 1}, 30303, 30303).URLv4()
	for _, in := range []string{idNodeID, "0x" + idNodeID, url} {
		id, err := ParseNodeID(in)
		if err != nil || id.String() != idNodeID {
			t.Fatalf("%q: %s, %v", in, id, err)
		}
	}
	for _, in := range []string{"", idNodeID[:63], idNodeID + "00", "enode://zz@1.2.3.4:1", strings.Repeat("g", 64)} {
		if _, err := ParseNodeID(in); !errors.Is(err, ErrNodeID) {
			t.Errorf("%q: error %v, want ErrNodeID", in, err)
		}
	}
}

func TestParseENR(t *testing.T) {
	n := disctest.NewNode(t, idKeyHex, "10.0.0.1:30303").LN.Node()
	got, err := ParseENR(n.String())
	if err != nil {
		t.Fatal(err)
	}
	if got.ID().String() != idNodeID || got.Seq() != n.Seq() {
		t.Fatalf("parsed %s seq %d", got.ID(), got.Seq())
	}
	if ep, ok := got.UDPEndpoint(); !ok || ep.String() != "10.0.0.1:30303" {
		t.Fatalf("endpoint %v", ep)
	}
	for _, in := range []string{"", "enode://x", "enr:!!!", "enr:-" + strings.Repeat("A", 20)} {
		if _, err := ParseENR(in); !errors.Is(err, ErrENR) {
			t.Errorf("%q: error %v, want ErrENR", in, err)
		}
	}
}

// The local identity tells which side of a pcap is local: an ENR's endpoint at once.
func TestIdentityENRMakesItsEndpointLocal(t *testing.T) {
	a := disctest.NewNode(t, idKeyHex, "10.0.0.1:30303")
	d := NewDecoder(Config{Identity: Identity{Nodes: []*enode.Node{a.LN.Node()}}})
	if !d.isLocal(a.Addr) || d.isLocal(netip.MustParseAddrPort("10.0.0.2:30303")) {
		t.Fatal("the ENR's endpoint should be local, and only it")
	}
	ids := (&Identity{IDs: []enode.ID{a.ID()}, Nodes: []*enode.Node{a.LN.Node()}}).AllIDs()
	if len(ids) != 1 || ids[0] != a.ID() {
		t.Fatalf("AllIDs %v", ids)
	}
}

// A capture of node A's traffic: A's key and its peer B's ID match packets of it; the key
// of G, a node of another capture, matches none, whichever flag gives it.
func TestLocalIDSeenOnlyForNodesOfTheTraffic(t *testing.T) {
	keyA, _ := crypto.HexToECDSA(disctest.KeyA)
	keyG, _ := crypto.HexToECDSA(disctest.KeyG)
	keyB, _ := crypto.HexToECDSA(disctest.KeyB)
	idA, idB, idG := enode.PubkeyToIDV4(&keyA.PublicKey), enode.PubkeyToIDV4(&keyB.PublicKey), enode.PubkeyToIDV4(&keyG.PublicKey)
	d := NewDecoder(Config{Identity: Identity{Keys: []*ecdsa.PrivateKey{keyA, keyG}, IDs: []enode.ID{idB, idG}}})
	for _, id := range []enode.ID{idA, idB, idG} {
		if d.LocalIDSeen(id) {
			t.Fatalf("%v seen before any packet", id)
		}
	}
	for _, r := range captureRecords(t, "devp2p-discovery.pcap") {
		d.Feed(r, func(result.Event) {})
	}
	d.Flush(func(result.Event) {})
	if !d.LocalIDSeen(idA) || !d.LocalIDSeen(idB) || d.LocalIDSeen(idG) {
		t.Errorf("seen: A %v, B %v, G %v; want A and B, not G", d.LocalIDSeen(idA), d.LocalIDSeen(idB), d.LocalIDSeen(idG))
	}
}
