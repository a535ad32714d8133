// streamload is the upstream and the load client of aperture's streaming and
// large-body benchmarks (tools/bench_streams.py, tools/bench_bodies.py).
//
//	streamload upstream -listen 127.0.0.1:PORT
//	streamload streams  -url URL -n N [-rate 50] [-event-bytes 120] [-ramp-rate 250] ...
//	streamload fetch    -url URL -bytes 52428800 [-n 3]
//	streamload post     -url URL -body FILE [-n 200]
//
// The upstream answers OpenAI Chat Completions (paced or bulk SSE streams, so
// that a gateway meters real events) and Anthropic Messages (a fixed answer,
// for request-body tests). The clients speak HTTP/1.1 on raw connections and
// print their results as one JSON line. Only the standard library is used, so
// that the Python tools can build it with a bare `go build`.
//
// Clock: every timestamp is CLOCK_MONOTONIC in nanoseconds, the clock every
// process on the machine shares, so that the upstream's send time and the
// client's read time of one event can be subtracted.
package main

import (
	"fmt"
	"os"
	"syscall"
	"time"
	"unsafe"
)

var (
	monoBase int64     // CLOCK_MONOTONIC at wallBase
	wallBase time.Time // carries Go's own monotonic reading (also CLOCK_MONOTONIC)
)

func clockMonotonic() int64 {
	var ts syscall.Timespec
	syscall.Syscall(syscall.SYS_CLOCK_GETTIME, 1 /* CLOCK_MONOTONIC */, uintptr(unsafe.Pointer(&ts)), 0)
	return ts.Nano()
}

func init() {
	// Go's time.Now carries a CLOCK_MONOTONIC reading relative to process
	// start; anchor it to the absolute clock once (the midpoint of two
	// syscalls around it), then mono() costs no syscall.
	best := int64(1 << 62)
	for i := 0; i < 5; i++ {
		a := clockMonotonic()
		now := time.Now()
		b := clockMonotonic()
		if b-a < best {
			best = b - a
			monoBase = a + (b-a)/2
			wallBase = now
		}
	}
}

// mono is CLOCK_MONOTONIC in nanoseconds.
func mono() int64 { return monoBase + int64(time.Since(wallBase)) }

// monoTime is the time.Time at which mono() reads t.
func monoTime(t int64) time.Time { return wallBase.Add(time.Duration(t - monoBase)) }

func sleepUntil(t int64) {
	if d := t - mono(); d > 0 {
		time.Sleep(time.Duration(d))
	}
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: streamload upstream|streams|fetch|post [flags]")
		os.Exit(2)
	}
	args := os.Args[2:]
	switch os.Args[1] {
	case "upstream":
		runUpstream(args)
	case "streams":
		runStreams(args)
	case "fetch":
		runFetch(args)
	case "post":
		runPost(args)
	default:
		fmt.Fprintln(os.Stderr, "unknown command:", os.Args[1])
		os.Exit(2)
	}
}
