package main

import (
	"math/bits"
	"sync/atomic"
)

// A log-linear histogram of microseconds: exact below 32 µs, then 16 buckets
// per power of two (at most 6 % wide). Safe for concurrent adds.
type hist struct {
	counts [700]atomic.Int64
	n      atomic.Int64
	max    atomic.Int64
}

func histIndex(us int64) int {
	if us < 32 {
		if us < 0 {
			return 0
		}
		return int(us)
	}
	e := bits.Len64(uint64(us)) - 5 // us>>e is in [16, 32)
	return 32 + (e-1)*16 + int(us>>e) - 16
}

// histUpper is the largest value that falls in bucket i.
func histUpper(i int) int64 {
	if i < 32 {
		return int64(i)
	}
	e := (i-32)/16 + 1
	m := int64((i-32)%16 + 16)
	return (m+1)<<e - 1
}

func (h *hist) add(us int64) {
	i := histIndex(us)
	if i >= len(h.counts) {
		i = len(h.counts) - 1
	}
	h.counts[i].Add(1)
	h.n.Add(1)
	for {
		m := h.max.Load()
		if us <= m || h.max.CompareAndSwap(m, us) {
			break
		}
	}
}

func (h *hist) reset() {
	for i := range h.counts {
		h.counts[i].Store(0)
	}
	h.n.Store(0)
	h.max.Store(0)
}

// quantile: the upper bound of the bucket holding quantile q (0..1).
func (h *hist) quantile(q float64) int64 {
	n := h.n.Load()
	if n == 0 {
		return 0
	}
	want := int64(q*float64(n) + 0.5)
	if want < 1 {
		want = 1
	}
	var seen int64
	for i := range h.counts {
		seen += h.counts[i].Load()
		if seen >= want {
			return histUpper(i)
		}
	}
	return h.max.Load()
}
