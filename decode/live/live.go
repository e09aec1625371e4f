// Package live is the live path: a bounded queue between the ring reader and the decoder,
// shedding when decoding falls behind, and record time.
//
// The reader (a goroutine reading the Source) never waits on decoding: it pushes into a
// bounded queue and drops what does not fit, and the datagrams of the heaviest flows once
// the queue is three quarters full, so that a flood cannot fill it alone. The consumer
// decodes what it takes; while the queue stands above its high-water mark it reports the
// datagrams of the heaviest flows without decoding them, so a flood from one peer does
// not blind it to the others, and above its skim mark every datagram. Whatever was
// dropped or left undecoded is reported as data, in record.Shed records. The decoder's
// clock moves only with the records processed; the source's clock moves it on only when
// nothing is queued and the source has delivered everything older.
package live

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/discotrace/discotrace/decode"
	"github.com/discotrace/discotrace/decode/record"
	"github.com/discotrace/discotrace/decode/result"
)

// Source is where records come from: the kernel tracer in `discotrace trace`, a script
// in tests.
type Source interface {
	// Read returns the next record, blocking until there is one. io.EOF ends the input;
	// another error ends it too, and Run returns it.
	Read() (record.Record, error)
	// DeliveredUntil returns a time before which every record has been returned by Read,
	// with Read called again since (the reader queues each record before it asks for the
	// next); zero while unknown.
	DeliveredUntil() time.Time
}

// Output takes the events, in stream order; Flush ends a burst.
type Output interface {
	Write(result.Event) error
	Flush() error
}

// Config configures Run. Zero values take the defaults.
type Config struct {
	// Capacity is the queue's size in records (DefaultCapacity).
	Capacity int
	// HighWater is the queue length above which the datagrams of heavy flows
	// are reported undecoded (half the capacity).
	HighWater int
	// SkimWater is the queue length from which every datagram is (7/8 of the capacity).
	SkimWater int
	// GuardWater is the queue length from which the reader drops the datagrams, reads and
	// kernel drops of heavy flows, keeping the rest for the others (3/4 of the capacity).
	GuardWater int
	// ReportEvery is the least record time between two shed reports (one second).
	ReportEvery time.Duration
	// Ticks says when to move time on while no record comes (every 100 ms).
	Ticks <-chan time.Time
}

// idleCheck is how often time is moved on while no record comes: as often as the
// tracer's own poll, the most it can add.
const idleCheck = 100 * time.Millisecond

func (c *Config) setDefaults() {
	if c.Capacity <= 0 {
		c.Capacity = DefaultCapacity
	}
	if c.HighWater <= 0 {
		c.HighWater = c.Capacity / 2
	}
	if c.SkimWater <= 0 {
		c.SkimWater = c.Capacity * 7 / 8
	}
	if c.GuardWater <= 0 {
		c.GuardWater = c.Capacity * 3 / 4
	}
	if c.ReportEvery <= 0 {
		c.ReportEvery = time.Second
	}
}

// Stats counts what went through Run: Read = Fed + Undecoded + Dropped.
type Stats struct {
	Read      uint64 // records returned by the source
	Dropped   uint64 // dropped unseen: the queue was full
	Fed       uint64 // fed to the decoder (printed, without one)
	Undecoded uint64 // datagrams reported without protocol decoding
	Reports   uint64 // shed records written
}

// Run reads src until it ends and writes to out what dec makes of the records (the
// records alone when dec is nil), then flushes dec and out. It returns at once on a write
// error; its reader goroutine then ends when src does.
func Run(src Source, dec *decode.Decoder, out Output, cfg Config) (Stats, error) {
	p := newPipeline(src, dec, out, cfg)
	readErr := make(chan error, 1)
	go func() { readErr <- p.q.fill(src) }()
	ticks := p.cfg.Ticks
	if ticks == nil {
		t := time.NewTicker(idleCheck)
		defer t.Stop()
		ticks = t.C
	}
	var batch []item
	for p.err == nil {
		var open bool
		batch, open = p.q.take(batch)
		if !open {
			p.finish()
			st := p.stats()
			if p.err != nil {
				return st, fmt.Errorf("write events: %w", p.err)
			}
			if err := <-readErr; !errors.Is(err, io.EOF) {
				return st, err // the source says what failed
			}
			return st, nil
		}
		if len(batch) > 0 {
			p.takeBatch(batch)
			if p.q.len() == 0 && p.err == nil {
				p.err = p.out.Flush() // a burst is written in one go, a lone event at once
			}
			continue
		}
		select {
		case <-p.q.ready:
		case <-ticks:
			p.tick()
		}
	}
	return p.stats(), fmt.Errorf("write events: %w", p.err)
}

// pipeline is the consumer side, and the queue it takes from.
type pipeline struct {
	src  Source
	dec  *decode.Decoder
	out  Output
	cfg  Config
	q    *queue
	emit func(result.Event)
	err  error // the first write error: nothing is written after it
	// rawSeq numbers the events without a decoder (which numbers its own).
	rawSeq uint64

	now    time.Time // record time: the latest record processed, or time moved on to
	shed   shedSpan  // what is not reported yet
	st     Stats
	report time.Time // when the last shed record was written
}

// shedSpan is shedding not reported yet: since is the record time of the first of it.
type shedSpan struct {
	dropped, undecoded uint64
	since              time.Time
}

func newPipeline(src Source, dec *decode.Decoder, out Output, cfg Config) *pipeline {
	cfg.setDefaults()
	p := &pipeline{src: src, dec: dec, out: out, cfg: cfg, q: newQueue(cfg.Capacity, cfg.GuardWater)}
	p.emit = func(ev result.Event) {
		if p.err == nil {
			p.err = out.Write(ev)
		}
	}
	return p
}

func (p *pipeline) stats() Stats {
	st := p.st
	st.Read = p.q.pushed.Load()
	return st
}

// takeBatch processes the records of a batch taken from the queue, in order, until a
// write fails (Run then returns).
func (p *pipeline) takeBatch(batch []item) {
	for i := range batch {
		if p.err != nil {
			return
		}
		p.q.taken()
		p.take(&batch[i])
	}
}

// take processes one queued record: decoded, or reported undecoded when the queue is
// deep and it is a datagram worth shedding. Reads, ICMP errors, drops and lost records
// are cheap, and always decoded: they are what explains a failure.
func (p *pipeline) take(it *item) {
	if it.drops.count > 0 {
		p.noteDrops(it.drops)
	}
	r := &it.rec
	if r.Time.After(p.now) {
		p.now = r.Time
	}
	switch {
	case p.dec == nil:
		p.emitRaw(r)
		p.st.Fed++
	case r.Kind == record.Datagram && p.skim(it.heavy):
		p.dec.Skim(r, p.emit)
		p.noteShed(r.Time)
		p.shed.undecoded++
		p.st.Undecoded++
	default:
		p.dec.Feed(r, p.emit)
		p.st.Fed++
	}
	p.maybeReport()
}

// skim decides whether a datagram is reported undecoded: heavy is the reader's load
// estimate of its flow, which counts every record pushed, so the heavy flows are known
// when the queue grows.
func (p *pipeline) skim(heavy bool) bool {
	depth := p.q.len()
	switch {
	case depth >= p.cfg.SkimWater:
		return true
	case depth > p.cfg.HighWater:
		return heavy
	}
	return false
}

// tick moves time on while no record comes: to the source's DeliveredUntil, read before
// the queue is looked at, so that whatever the source returned before it is either
// queued (and time waits) or processed already.
func (p *pipeline) tick() {
	until := p.src.DeliveredUntil()
	if p.q.len() > 0 {
		return
	}
	if d := p.q.takeDrops(); d.count > 0 {
		p.noteDrops(d)
	}
	if until.After(p.now) {
		p.now = until
		if p.dec != nil {
			p.dec.Advance(until, p.emit)
		}
	}
	p.maybeReport()
}

func (p *pipeline) noteDrops(d dropSpan) {
	p.noteShed(d.first)
	p.shed.dropped += d.count
	p.st.Dropped += d.count
}

func (p *pipeline) noteShed(t time.Time) {
	if p.shed.dropped+p.shed.undecoded == 0 || t.Before(p.shed.since) {
		p.shed.since = t
	}
}

// maybeReport writes the shed record once the shedding not yet reported spans
// ReportEvery of record time: about once a second while shedding goes on.
func (p *pipeline) maybeReport() {
	if p.shed.dropped+p.shed.undecoded > 0 && !p.now.Before(p.shed.since.Add(p.cfg.ReportEvery)) {
		p.reportShed(p.now)
	}
}

// reportShed writes what was shed as a record.Shed record, through the decoder as every
// record. The span starts no earlier than the last report: each shed record is counted
// in exactly one.
func (p *pipeline) reportShed(at time.Time) {
	since := p.shed.since
	if since.Before(p.report) {
		since = p.report
	}
	if since.After(at) {
		since = at
	}
	r := record.Record{Kind: record.Shed, Time: at, Since: since, Count: p.shed.dropped, Undecoded: p.shed.undecoded}
	if p.dec != nil {
		p.dec.Feed(&r, p.emit)
	} else {
		p.emitRaw(&r)
	}
	p.shed = shedSpan{}
	p.report = at
	p.st.Reports++
}

// emitRaw writes r as observed, without a decoder.
func (p *pipeline) emitRaw(r *record.Record) {
	p.rawSeq++
	p.emit(&result.Observation{Head: result.Head{Seq: p.rawSeq, Time: r.Time}, Record: *r})
}

// finish, once the reader ended and the queue is empty, reports the shedding still
// pending (drops after the last queued record end their span at their own time) and
// flushes the decoder and the output.
func (p *pipeline) finish() {
	at := p.now
	if d := p.q.takeDrops(); d.count > 0 {
		p.noteDrops(d)
		if d.last.After(at) {
			at = d.last
		}
	}
	if p.shed.dropped+p.shed.undecoded > 0 {
		p.reportShed(at)
	}
	if p.dec != nil {
		p.dec.Flush(p.emit)
	}
	if p.err == nil {
		p.err = p.out.Flush()
	}
}
