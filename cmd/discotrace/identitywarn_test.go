package main

import (
	"bytes"
	"crypto/ecdsa"
	"os"
	"strings"
	"testing"

	"github.com/discotrace/discotrace/decode"
	"github.com/discotrace/discotrace/decode/capture"
	"github.com/discotrace/discotrace/decode/record"
)

// A node key that matches no node of a capture is said once on stderr, by flag and node ID
// (never the key); the keys of the capture's own nodes (README of the test captures) are
// not. The events are the same either way.
func TestDecodeWarnsOnceAboutANodeKeyThatMatchesNothing(t *testing.T) {
	path := testCapture(t, "devp2p-discovery.pcap")
	const (
		keyA = testKeyA                                                           // the listener of this capture
		keyB = "3333333333333333333333333333333333333333333333333333333333333333" // its client
		keyG = "2222222222222222222222222222222222222222222222222222222222222222" // geth, of reject.pcap only
	)
	decodeWith := func(args ...string) (stdout, stderr string) {
		var out, diag bytes.Buffer
		cmd := newDecodeCmd()
		cmd.SetOut(&out)
		cmd.SetErr(&diag)
		cmd.SetArgs(append([]string{path}, args...))
		if err := cmd.Execute(); err != nil {
			t.Fatalf("decode %v: %v", args, err)
		}
		return out.String(), diag.String()
	}
	for _, args := range [][]string{{"--nodekey", keyA}, {"--nodekey", keyB}, {"--nodekey", keyA, "--nodekey", keyB}} {
		if _, diag := decodeWith(args...); diag != "" {
			t.Errorf("decode %v: stderr %q, want nothing: the key's node is in the capture", args, diag)
		}
	}
	want := "discotrace: --nodekey #2 (node 85b1f044) matches no node in this capture (20 discovery packets): no packet came from or went to it, so it changes nothing; give the key of the node whose traffic this is (geth keeps it in <datadir>/geth/nodekey)\n"
	withG, diag := decodeWith("--nodekey", keyA, "--nodekey", keyG)
	if diag != want {
		t.Errorf("decode with a key of no node of the capture: stderr\n\t%q, want\n\t%q", diag, want)
	}
	if strings.Contains(diag, keyG[:16]) {
		t.Error("the warning shows the key")
	}
	if withA, _ := decodeWith("--nodekey", keyA); withA != withG {
		t.Error("a key that matches nothing changed the events")
	}
	_, diag = decodeWith("--node-id", "0000000000000000000000000000000000000000000000000000000000000001")
	if !strings.HasPrefix(diag, "discotrace: --node-id #1 (node 00000000) matches no node in this capture") || strings.Count(diag, "\n") != 1 {
		t.Errorf("decode with an ID of no node of the capture: stderr %q, want one line saying so", diag)
	}
}

// Live, the warning comes once, after the first packets (trace's identityWatchAfter), not
// again when the stream ends.
func TestIdentityWatchWarnsOnceAfterTheFirstPackets(t *testing.T) {
	f, err := os.Open(testCapture(t, "devp2p-discovery.pcap"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	keyG, err := decode.ParseNodeKey("2222222222222222222222222222222222222222222222222222222222222222")
	if err != nil {
		t.Fatal(err)
	}
	cfg := decode.Config{Identity: decode.Identity{Keys: []*ecdsa.PrivateKey{keyG}}}
	dec := decode.NewDecoder(cfg)
	var diag bytes.Buffer
	watch := newIdentityWatch(dec, cfg.Identity, &diag, 5)
	if err := capture.Read(f, func(r *record.Record) error { dec.Feed(r, watch.observe); return nil }); err != nil {
		t.Fatal(err)
	}
	dec.Flush(watch.observe)
	watch.finish("while tracing")
	if !strings.HasPrefix(diag.String(), "discotrace: --nodekey #1 (node 85b1f044) matches no node in the first 5 discovery packets: ") || strings.Count(diag.String(), "\n") != 1 {
		t.Errorf("stderr %q, want one warning after the first 5 packets", diag.String())
	}
}
