package report

import (
	"fmt"
	"slices"
)

// sample keeps at most a cap of values: every value while there are fewer, then a
// uniform random subset (reservoir sampling, Algorithm R). The random source is seeded
// with a constant, so the same stream gives the same report.
type sample struct {
	seen uint64
	kept []int64
}

// add offers v; rng supplies the reservoir's random numbers.
func (s *sample) add(v int64, limit int, rng *splitmix) {
	s.seen++
	if len(s.kept) < limit {
		s.kept = append(s.kept, v)
		return
	}
	if j := rng.next() % s.seen; j < uint64(limit) {
		s.kept[j] = v
	}
}

// merge offers every value o kept. Past the cap the result is no longer a uniform sample
// of both streams (o's values count once each, not for the values o dropped); merges
// happen only when a peer's address and node ID are joined, rarely and early.
func (s *sample) merge(o *sample, limit int, rng *splitmix) {
	seen := s.seen + o.seen
	for _, v := range o.kept {
		s.add(v, limit, rng)
	}
	s.seen = seen
}

// percentiles computes p50, p90 and p99 by nearest rank; nil when nothing was seen.
func (s *sample) percentiles() *Percentiles {
	if s.seen == 0 || len(s.kept) == 0 {
		return nil
	}
	sorted := slices.Clone(s.kept)
	slices.Sort(sorted)
	return &Percentiles{
		Seen: s.seen, Kept: len(sorted),
		P50Ns: nearestRank(sorted, 50), P90Ns: nearestRank(sorted, 90), P99Ns: nearestRank(sorted, 99),
	}
}

// nearestRank is the smallest value with at least p percent of the values at or below it.
func nearestRank(sorted []int64, p int) int64 {
	rank := (p*len(sorted) + 99) / 100 // ceil(p/100 * n)
	return sorted[max(rank, 1)-1]
}

// splitmix is a small deterministic random source (SplitMix64).
type splitmix struct{ state uint64 }

func (r *splitmix) next() uint64 {
	r.state += 0x9e3779b97f4a7c15
	z := r.state
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// samplingNote says how percentiles were computed, for the summary.
func samplingNote(perPeer, total int) string {
	return fmt.Sprintf("nearest rank over every round trip up to %d per peer (%d for the totals), then over a uniform random sample of that many", perPeer, total)
}
