package decode

import (
	"crypto/ecdsa"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/p2p/discover/v5wire"
	"github.com/ethereum/go-ethereum/p2p/enode"

	"github.com/discotrace/discotrace/decode/internal/disctest"
	"github.com/discotrace/discotrace/decode/result"
	"github.com/discotrace/discotrace/ndjson"
)

// A node run with a longer handshake timeout than go-ethereum's (discotrace's
// --handshake-timeout says how long the traced node keeps a WHOAREYOU): a HANDSHAKE
// 1.5 s after its challenge is in time for a 2 s timeout, and late for the default 1 s,
// whether the decoder holds the recipient's key or only knows its ID. In time, the
// handshake is established when the request is answered, and unanswered it is a
// no_response, not a rejection; late, it is rejected as go-ethereum rejects it.
func TestScenarioV5HandshakeTimeoutConfigured(t *testing.T) {
	for _, tc := range []struct {
		timeout        time.Duration // 0: the default
		answered       bool          // the recipient answers the PING the HANDSHAKE carries
		outcome, cause string
	}{
		{timeout: 2 * time.Second, answered: true, outcome: string(result.Established)},
		{timeout: 2 * time.Second, outcome: string(result.Failed), cause: string(result.NoResponse)},
		{timeout: 0, outcome: string(result.Failed), cause: string(result.Rejected)},
	} {
		for _, withKey := range []bool{true, false} {
			a, b := disctest.NewNode(t, disctest.KeyA, "10.0.0.1:30303"), disctest.NewNode(t, disctest.KeyB, "10.0.0.2:30303")
			cfg := Config{Identity: Identity{IDs: []enode.ID{b.ID()}}, HandshakeTimeout: tc.timeout}
			if withKey {
				cfg.Identity = Identity{Keys: []*ecdsa.PrivateKey{b.Key}}
			}
			s := newScNet(t, cfg)
			ping := &v5wire.Ping{ReqID: []byte{1, 2, 3, 4, 5, 6, 7, 8}, ENRSeq: 1}
			w := s.challenge(a, b, ping)
			s.after(1500 * time.Millisecond)
			s.v5(a, b, ping, w)
			if tc.answered {
				s.after(time.Millisecond)
				s.v5(b, a, &v5wire.Pong{ReqID: ping.ReqID, ENRSeq: 1, ToIP: net.IP{10, 0, 0, 1}, ToPort: 30303}, nil)
			}
			s.tick(3 * time.Second)
			s.flush()

			hs := s.only(ndjson.TypeHandshake)
			if hs.Outcome != tc.outcome || hs.Cause != tc.cause {
				t.Errorf("timeout %v, with key %v: handshake %s %q, want %s %q\n%s", tc.timeout, withKey, hs.Outcome, hs.Cause, tc.outcome, tc.cause, s.dump())
			}
			late := strings.Contains(s.ofType(ndjson.TypePacket)[2].Disc.Error, "more than 1s before")
			if wantLate := tc.timeout == 0; late != wantLate {
				t.Errorf("timeout %v, with key %v: the HANDSHAKE called late: %v, want %v", tc.timeout, withKey, late, wantLate)
			}
		}
	}
}
