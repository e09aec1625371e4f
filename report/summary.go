// Package report sums up a stream of discotrace events (the NDJSON schema's values,
// whether they come from a live trace, a capture or a parsed NDJSON file): totals by type,
// outcome and cause, what the tracer lost, and per peer what it exchanged and how that
// went, worst first. Memory stays bounded on endless streams: a fixed number of peers is
// itemised (the events about others are counted), and round-trip percentiles come from a
// capped uniform sample.
package report

// Summary is what a stream of events amounts to. Its JSON form is `discotrace report
// --json`; the text page renders the same value.
type Summary struct {
	// Events counts every event read; ByType splits them by "type".
	Events uint64            `json:"events"`
	ByType map[string]uint64 `json:"by_type,omitempty"`
	// First and Last are the earliest and latest event times (RFC 3339): the span the
	// stream covers.
	First string `json:"first,omitempty"`
	Last  string `json:"last,omitempty"`

	// Loss is what the tracer and the decoder could not report: every count below
	// misses it.
	Loss Loss `json:"loss"`

	Handshakes Tally `json:"handshakes"`
	Exchanges  Tally `json:"exchanges"`
	// Anomalies counts anomaly events by kind (clock_skew, ...).
	Anomalies map[string]uint64 `json:"anomalies,omitempty"`

	// LocalIDs are the node IDs known to be the local node's (given, or seen on sends):
	// it is not listed among the peers. LocalEndpoints are its addresses seen.
	LocalIDs       []string `json:"local_ids,omitempty"`
	LocalEndpoints []string `json:"local_endpoints,omitempty"`

	// Peers are the nodes the events involve, worst first (most failures). A peer is
	// keyed by its node ID where an event names it, else by its address.
	Peers []Peer `json:"peers,omitempty"`
	// PeersOmitted counts the events about peers past the table's bound (MaxPeers):
	// they are in the totals, not in Peers.
	PeersOmitted uint64 `json:"peers_omitted_events,omitempty"`
	// RTTSampling says how the percentiles were computed.
	RTTSampling string `json:"rtt_sampling"`
}

// Loss is what the stream says was not reported.
type Loss struct {
	// LostEvents counts "lost" events; Lost sums their counts: kernel events the ring
	// buffer could not take.
	LostEvents uint64 `json:"lost_events"`
	Lost       uint64 `json:"lost"`
	// ShedEvents counts "shed" events; the rest sums their fields: records the decoder
	// dropped unseen (count), passed on without decoding (undecoded), and requests and
	// messages it did not follow into exchanges and handshakes (untracked).
	ShedEvents    uint64 `json:"shed_events"`
	ShedDropped   uint64 `json:"shed_dropped"`
	ShedUndecoded uint64 `json:"shed_undecoded"`
	ShedUntracked uint64 `json:"shed_untracked"`
}

// Any tells whether anything was lost or shed.
func (l Loss) Any() bool {
	return l.LostEvents+l.Lost+l.ShedEvents+l.ShedDropped+l.ShedUndecoded+l.ShedUntracked > 0
}

// Tally sums up the handshakes or the exchanges of a stream.
type Tally struct {
	Total uint64 `json:"total"`
	// ByOutcome counts them by "outcome" (established or answered, failed, open).
	ByOutcome map[string]uint64 `json:"by_outcome,omitempty"`
	// ByCause counts the failed ones by "cause", as revised by revision events.
	ByCause map[string]uint64 `json:"by_cause,omitempty"`
	// Revised counts the failures whose cause a revision event changed.
	Revised uint64 `json:"revised,omitempty"`
	// RTT is over the exchanges' rtt_ns, or the handshakes' total_ns.
	RTT *Percentiles `json:"rtt,omitempty"`
}

// Percentiles of round-trip times, in nanoseconds, by the nearest-rank method.
type Percentiles struct {
	// Seen counts the round trips observed; Kept how many the percentiles come from
	// (fewer when the sample's cap was reached).
	Seen  uint64 `json:"seen"`
	Kept  int    `json:"kept"`
	P50Ns int64  `json:"p50_ns"`
	P90Ns int64  `json:"p90_ns"`
	P99Ns int64  `json:"p99_ns"`
}

// Peer is one remote node: what the events about it add up to.
type Peer struct {
	// ID is its node ID, hex; empty when no event named it.
	ID string `json:"id,omitempty"`
	// Endpoints are the addresses it was seen at, first seen first, up to a bound;
	// UnlistedEndpointEvents counts its events at further addresses (how many distinct
	// addresses those were is not kept).
	Endpoints              []string `json:"endpoints,omitempty"`
	UnlistedEndpointEvents int      `json:"unlisted_endpoint_events,omitempty"`
	// DatagramsIn counts the datagrams it sent, DatagramsOut those sent to it.
	DatagramsIn  uint64 `json:"datagrams_in"`
	DatagramsOut uint64 `json:"datagrams_out"`
	Handshakes   Count  `json:"handshakes"`
	Exchanges    Count  `json:"exchanges"`
	// HandshakeRTT is over its handshakes' total_ns, ExchangeRTT its exchanges' rtt_ns.
	HandshakeRTT *Percentiles `json:"handshake_rtt,omitempty"`
	ExchangeRTT  *Percentiles `json:"exchange_rtt,omitempty"`
	// Causes counts its failed handshakes and exchanges by cause; Anomalies its anomaly
	// events by kind.
	Causes    map[string]uint64 `json:"causes,omitempty"`
	Anomalies map[string]uint64 `json:"anomalies,omitempty"`
}

// Count splits a peer's handshakes or exchanges by outcome.
type Count struct {
	OK     uint64 `json:"ok"` // established handshakes, answered exchanges
	Failed uint64 `json:"failed"`
	Open   uint64 `json:"open,omitempty"`
}

// Failures is how many of the peer's handshakes and exchanges failed.
func (p *Peer) Failures() uint64 { return p.Handshakes.Failed + p.Exchanges.Failed }
