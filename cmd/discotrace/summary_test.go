package main

import (
	"crypto/ecdsa"
	"io"
	"os"
	"testing"

	"github.com/discotrace/discotrace/decode"
	"github.com/discotrace/discotrace/decode/result"
	"github.com/discotrace/discotrace/report"
)

// BenchmarkTraceOutput prints what the closing summary costs the live path: writing the
// events of suites-devp2p.pcap as NDJSON, alone and with the summary's aggregator fed
// alongside.
func BenchmarkTraceOutput(b *testing.B) {
	path := testCapture(b, "suites-devp2p.pcap")
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	key, err := decode.ParseNodeKey(testKeyA)
	if err != nil {
		b.Fatal(err)
	}
	var events []result.Event
	err = decodeCapture(f, path, decode.Config{Identity: decode.Identity{Keys: []*ecdsa.PrivateKey{key}}}, io.Discard, func(ev result.Event) error {
		events = append(events, result.Keep(ev))
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	run := func(b *testing.B, out func() *renderedOutput) {
		for b.Loop() {
			o := out()
			for _, ev := range events {
				if err := o.Write(ev); err != nil {
					b.Fatal(err)
				}
			}
			if err := o.Flush(); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(events)), "ns/event")
	}
	b.Run("ndjson", func(b *testing.B) {
		run(b, func() *renderedOutput {
			return (&formatFlag{formatNDJSON}).output(io.Discard, false)
		})
	})
	b.Run("ndjson+summary", func(b *testing.B) {
		run(b, func() *renderedOutput {
			o := (&formatFlag{formatNDJSON}).output(io.Discard, false)
			o.summary = report.New(report.Options{})
			return o
		})
	})
}
