package demo

import (
	"github.com/discotrace/discotrace/decode/record"
	"github.com/discotrace/discotrace/decode/result"
)

// Counts is what a run's events add up to: how handshakes and exchanges ended, why the
// failed ones failed, why the kernel dropped datagrams, and what the tracer lost.
type Counts struct {
	Handshakes map[result.Outcome]int
	Exchanges  map[result.Outcome]int
	// Causes counts the failed handshakes and exchanges by cause.
	Causes map[result.Cause]int
	// Drops counts the kernel's drops of watched datagrams by reason (SOCKET_RCVBUFF, ...).
	Drops     map[string]int
	Anomalies map[result.AnomalyKind]int
	// Lost counts the events the kernel side could not deliver; Shed the records the
	// decoder dropped or left undecoded because it fell behind.
	Lost, Shed uint64
}

func newCounts() *Counts {
	return &Counts{
		Handshakes: map[result.Outcome]int{},
		Exchanges:  map[result.Outcome]int{},
		Causes:     map[result.Cause]int{},
		Drops:      map[string]int{},
		Anomalies:  map[result.AnomalyKind]int{},
	}
}

func (c *Counts) add(ev result.Event) {
	switch ev := ev.(type) {
	case *result.Handshake:
		c.Handshakes[ev.Outcome]++
		if ev.Outcome == result.Failed {
			c.Causes[ev.Cause]++
		}
	case *result.Exchange:
		c.Exchanges[ev.Outcome]++
		if ev.Outcome == result.Failed {
			c.Causes[ev.Cause]++
		}
	case *result.Anomaly:
		c.Anomalies[ev.Kind]++
	case *result.Observation:
		switch ev.Record.Kind {
		case record.Drop:
			c.Drops[ev.Record.Reason]++
		case record.Lost:
			c.Lost += ev.Record.Count
		case record.Shed:
			c.Shed += ev.Record.Count + ev.Record.Undecoded
		}
	}
}
