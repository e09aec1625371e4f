package packet

import (
	"math"
	"time"
)

// ExpiredAt reports whether a discv4 packet's expiration had passed at t (when it was
// captured): its receiver drops it unanswered.
func (p *Packet) ExpiredAt(t time.Time) bool {
	if p.Proto != ProtoV4 || p.Expiration.IsZero() {
		return false
	}
	// As go-ethereum's v4wire.Expired: time.Unix(expiration, 0).Before(now). Compared as
	// Unix seconds, then the fraction: times near the int64 limit overflow time.Time's
	// internal representation and compare wrongly.
	exp, now := p.Expiration.Unix(), t.Unix()
	return p.ExpirationNegative() || exp < now || exp == now && t.Nanosecond() > 0
}

// ExpirationNegative reports a discv4 expiration of 2^63 or more (the discv4 decoder
// saturates those to the int64 limit): go-ethereum converts expirations to int64, so for
// it they lie before 1970 and the packet is expired. The devp2p suite sends such values
// on purpose.
func (p *Packet) ExpirationNegative() bool {
	return p.Expiration.Unix() == math.MaxInt64
}
