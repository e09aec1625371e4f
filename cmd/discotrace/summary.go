package main

import (
	"github.com/discotrace/discotrace/decode/live"
	"github.com/discotrace/discotrace/decode/result"
	"github.com/discotrace/discotrace/ndjson"
	"github.com/discotrace/discotrace/report"
)

// summarizingOutput passes the live path's results on to next and counts each in agg,
// for the summary `trace` prints when it stops: the same aggregator as `report`, fed the
// same schema values as the output.
type summarizingOutput struct {
	next live.Output
	agg  *report.Aggregator
}

func (o summarizingOutput) Write(ev result.Event) error {
	o.agg.Add(ndjson.FromResult(ev, false))
	return o.next.Write(ev)
}

func (o summarizingOutput) Flush() error { return o.next.Flush() }
