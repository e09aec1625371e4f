package main

import (
	"github.com/discotrace/discotrace/decode/result"
	"github.com/discotrace/discotrace/ndjson"
	"github.com/discotrace/discotrace/report"
)

// summarizingOutput is the NDJSON output that also counts each event in agg, for the
// summary `trace` prints when it stops: the aggregator of `report`, fed the very values
// that are printed. Each event is rendered once, for both: rendering is most of the
// output's cost.
type summarizingOutput struct {
	ndjsonOutput
	agg *report.Aggregator
}

func (o summarizingOutput) Write(ev result.Event) error {
	line := ndjson.FromResult(ev, o.withPayload)
	o.agg.Add(line)
	return o.enc.Encode(line)
}
