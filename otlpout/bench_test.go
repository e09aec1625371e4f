package otlpout_test

import (
	"context"
	"testing"
	"time"

	"github.com/discotrace/discotrace/internal/otlptest"
	"github.com/discotrace/discotrace/otlpout"
)

// BenchmarkWrite is the live path's cost of the export per event (ns/event: the record
// built from the result and queued), and how many events a second the export to a
// collector over gRPC on loopback keeps up with (events/s, writing included). Events are
// written a queue at a time and the export waited for, so that none is dropped.
func BenchmarkWrite(b *testing.B) {
	recv := otlptest.StartGRPC(b)
	recv.Discard = true
	evs := events()
	ep, err := otlpout.ParseEndpoint(recv.URL)
	if err != nil {
		b.Fatal(err)
	}
	x, err := otlpout.New(otlpout.Config{Endpoint: ep})
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	for i := 0; i < b.N; {
		for j := 0; j < otlpout.DefaultQueueSize && i < b.N; j++ {
			x.Write(evs[i%len(evs)])
			i++
		}
		b.StopTimer()
		for s := x.Stats(); s.Exported+s.Failed < s.Queued; s = x.Stats() {
			time.Sleep(100 * time.Microsecond)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/event")
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if st := x.Close(ctx); st.Dropped+st.Failed > 0 {
		b.Errorf("stats %+v: records lost", st)
	}
}
