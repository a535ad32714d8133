package main

// The upstream: an OpenAI Chat Completions and Anthropic Messages provider
// whose answers are shaped by request headers.
//
// POST /v1/chat/completions, "stream": true:
//
//	x-load-events: K        content events in the stream (default 20)
//	x-load-rate: R          events per second, paced (0 or absent: at once)
//	x-load-event-bytes: B   bytes of each content event, "data: " to "\n\n"
//	                        (default 120; the content is padded to reach it)
//	x-load-bytes: T         bulk: T bytes of content events as fast as the
//	                        connection takes them, instead of K paced events
//	x-load-write-bytes: W   bulk: bytes per write (default 65536)
//
// A paced event's content is the CLOCK_MONOTONIC nanosecond at which it is
// written; the stream ends with a finish chunk, a usage chunk
// (stream_options.include_usage) and `data: [DONE]`. Each paced stream
// starts at a random phase within one period, so that streams opened in a
// burst do not send in step.
//
// POST /v1/messages: reads the whole body and answers a short Anthropic
// message; the x-load-received header says how many body bytes arrived.
//
// GET /stats[?reset=1]: paced events sent since the last reset and how late
// they were against their schedule (JSON).
//
// Cost: requests are read by a goroutine per connection (net/http's parser),
// but paced events are written by one scheduler goroutine, straight to the
// sockets (one send(2) per event, no goroutine wake-up, no timer per
// stream), so that 100,000 events/s cost little more than their system calls.

import (
	"bufio"
	"container/heap"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"math/rand"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

var (
	lag       hist // paced events: µs late against their schedule
	sentPaced atomic.Int64
	active    atomic.Int64 // paced streams being written
	sched     = &scheduler{}
)

func runUpstream(args []string) {
	fs := flag.NewFlagSet("upstream", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:8091", "HOST:PORT")
	fs.Parse(args)
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	go sched.run()
	for {
		conn, err := ln.Accept()
		if err != nil {
			log.Fatal(err)
		}
		go serveConn(conn.(*net.TCPConn))
	}
}

func serveConn(conn *net.TCPConn) {
	defer conn.Close()
	br := bufio.NewReaderSize(conn, 64<<10)
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		body, err := io.ReadAll(req.Body)
		if err != nil {
			return
		}
		var ok bool
		switch {
		case req.Method == "POST" && strings.HasSuffix(req.URL.Path, "/chat/completions"):
			ok = chatCompletions(conn, req, body)
		case req.Method == "POST" && strings.HasSuffix(req.URL.Path, "/messages"):
			ok = messages(conn, len(body))
		case req.URL.Path == "/stats":
			ok = stats(conn, req)
		default:
			ok = respond(conn, 404, "application/json", `{"error":"not found"}`, "")
		}
		if !ok || req.Close {
			return
		}
	}
}

func respond(conn net.Conn, status int, contentType, body, extra string) bool {
	head := "HTTP/1.1 " + strconv.Itoa(status) + " " + http.StatusText(status) + "\r\nContent-Type: " +
		contentType + "\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n" + extra + "\r\n"
	_, err := conn.Write([]byte(head + body))
	return err == nil
}

func headerInt(r *http.Request, name string, def int64) int64 {
	v := r.Header.Get(name)
	if v == "" {
		return def
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return def
	}
	return n
}

type chatRequest struct {
	Model  string `json:"model"`
	Stream bool   `json:"stream"`
}

const chunkObject = `{"id":"chatcmpl-load","object":"chat.completion.chunk","model":`

// chunk frames p as one HTTP/1.1 chunk, appended to dst.
func chunk(dst, p []byte) []byte {
	dst = strconv.AppendInt(dst, int64(len(p)), 16)
	dst = append(dst, '\r', '\n')
	dst = append(dst, p...)
	return append(dst, '\r', '\n')
}

func chatCompletions(conn *net.TCPConn, r *http.Request, body []byte) bool {
	var req chatRequest
	if json.Unmarshal(body, &req) != nil || req.Model == "" {
		return respond(conn, 400, "application/json",
			`{"error":{"message":"bad request","type":"invalid_request_error"}}`, "")
	}
	model, _ := json.Marshal(req.Model)
	events := headerInt(r, "x-load-events", 20)
	if !req.Stream {
		return respond(conn, 200, "application/json", fmt.Sprintf(
			`{"id":"chatcmpl-load","object":"chat.completion","created":1700000000,"model":%s,`+
				`"choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],`+
				`"usage":{"prompt_tokens":12,"completion_tokens":%d,"total_tokens":%d}}`, model, events, events+12), "")
	}
	head := "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n" +
		"Transfer-Encoding: chunked\r\n\r\n"
	if _, err := conn.Write([]byte(head)); err != nil {
		return false
	}
	prefix := []byte("data: " + chunkObject + string(model) + `,"choices":[{"index":0,"delta":{"content":"`)
	size := int(headerInt(r, "x-load-event-bytes", 120))
	var pending []byte
	if total := headerInt(r, "x-load-bytes", 0); total > 0 {
		events = bulk(conn, prefix, size, total, int(headerInt(r, "x-load-write-bytes", 65536)))
		if events < 0 {
			return false
		}
	} else {
		rate := float64(headerInt(r, "x-load-rate", 0))
		fd := -1
		raw, _ := conn.SyscallConn()
		raw.Control(func(f uintptr) { fd = int(f) })
		s := &pacedStream{fd: fd, left: events, prefix: prefix, size: size, done: make(chan bool, 1)}
		if rate > 0 {
			s.period = int64(float64(time.Second) / rate)
		}
		active.Add(1)
		sched.add(s)
		ok := <-s.done
		active.Add(-1)
		if !ok {
			return false
		}
		pending = s.pending // what the scheduler could not write without waiting
	}
	tail := "data: " + chunkObject + string(model) +
		`,"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}` + "\n\n" +
		"data: " + chunkObject + string(model) + `,"choices":[],"usage":{"prompt_tokens":12,` +
		`"completion_tokens":` + strconv.FormatInt(events, 10) +
		`,"total_tokens":` + strconv.FormatInt(events+12, 10) + "}}\n\n" +
		"data: [DONE]\n\n"
	out := chunk(pending, []byte(tail))
	out = append(out, "0\r\n\r\n"...)
	_, err := conn.Write(out)
	return err == nil
}

// A paced stream, written by the scheduler.
type pacedStream struct {
	fd       int
	next     int64 // CLOCK_MONOTONIC ns of the next event
	period   int64
	left     int64
	prefix   []byte
	size     int
	pending  []byte // bytes the socket did not take yet
	done     chan bool
	heapSlot int
}

type streamHeap []*pacedStream

func (h streamHeap) Len() int           { return len(h) }
func (h streamHeap) Less(i, j int) bool { return h[i].next < h[j].next }
func (h streamHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i]; h[i].heapSlot = i; h[j].heapSlot = j }
func (h *streamHeap) Push(x any)        { s := x.(*pacedStream); s.heapSlot = len(*h); *h = append(*h, s) }
func (h *streamHeap) Pop() any          { old := *h; s := old[len(old)-1]; *h = old[:len(old)-1]; return s }

type scheduler struct {
	mu    sync.Mutex
	heap  streamHeap
	added []*pacedStream
}

func (sc *scheduler) add(s *pacedStream) {
	s.next = mono()
	if s.period > 0 {
		s.next += rand.Int63n(s.period)
	}
	sc.mu.Lock()
	sc.added = append(sc.added, s)
	sc.mu.Unlock()
}

func (sc *scheduler) run() {
	buf := make([]byte, 0, 4096)
	var event []byte
	for {
		sc.mu.Lock()
		for _, s := range sc.added {
			heap.Push(&sc.heap, s)
		}
		sc.added = sc.added[:0]
		sc.mu.Unlock()
		now := mono()
		for len(sc.heap) > 0 && sc.heap[0].next <= now {
			s := sc.heap[0]
			if s.period > 0 {
				lag.add((now - s.next) / 1000)
				sentPaced.Add(1)
			}
			event = append(event[:0], s.prefix...)
			event = strconv.AppendInt(event, now, 10)
			for pad := s.size - len(event) - 7; pad > 0; pad-- {
				event = append(event, ' ')
			}
			event = append(event, "\"}}]}\n\n"...)
			buf = chunk(append(buf[:0], s.pending...), event)
			n, err := syscall.SendmsgN(s.fd, buf, nil, nil, syscall.MSG_NOSIGNAL|syscall.MSG_DONTWAIT)
			if err == syscall.EAGAIN || err == syscall.EINTR {
				n, err = 0, nil
			}
			if err != nil {
				heap.Pop(&sc.heap)
				s.done <- false
				now = mono()
				continue
			}
			s.pending = append(s.pending[:0], buf[n:]...)
			s.left--
			if s.left <= 0 {
				heap.Pop(&sc.heap)
				s.done <- true
			} else {
				s.next += s.period
				heap.Fix(&sc.heap, 0)
			}
			now = mono()
		}
		wait := int64(5 * time.Millisecond) // idle: a new stream's first event waits at most this
		if len(sc.heap) > 0 {
			wait = int64(time.Millisecond)
			if d := sc.heap[0].next - now; d < wait {
				wait = d
			}
		}
		if wait > 0 {
			time.Sleep(time.Duration(wait))
		}
	}
}

// bulk writes content events of `size` bytes until `total` bytes are out, in
// HTTP chunks of about `writeBytes`. The bytes are the same on every call,
// so a client can compare what it received through a proxy with what came
// directly. Returns the number of events, or -1 when the client went away.
func bulk(conn net.Conn, prefix []byte, size int, total int64, writeBytes int) int64 {
	const suffix = "\"}}]}\n\n"
	text := "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor "
	event := append([]byte(nil), prefix...)
	for i := 0; len(event)+len(suffix) < size; i++ {
		event = append(event, text[i%len(text)])
	}
	event = append(event, suffix...)
	per := writeBytes / len(event)
	if per < 1 {
		per = 1
	}
	full := chunk(nil, []byte(strings.Repeat(string(event), per)))
	var events, sent int64
	for sent < total {
		out := full
		k := int64(per)
		if left := total - sent; left < int64(per*len(event)) {
			k = (left + int64(len(event)) - 1) / int64(len(event))
			out = chunk(nil, []byte(strings.Repeat(string(event), int(k))))
		}
		if _, err := conn.Write(out); err != nil {
			return -1
		}
		sent += k * int64(len(event))
		events += k
	}
	return events
}

func messages(conn net.Conn, n int) bool {
	return respond(conn, 200, "application/json",
		`{"id":"msg_load","type":"message","role":"assistant","model":"claude-sonnet-4-5",`+
			`"content":[{"type":"text","text":"Done."}],"stop_reason":"end_turn","stop_sequence":null,`+
			`"usage":{"input_tokens":`+strconv.Itoa(n/4)+`,"output_tokens":2}}`,
		"x-load-received: "+strconv.Itoa(n)+"\r\n")
}

func stats(conn net.Conn, r *http.Request) bool {
	out := map[string]int64{
		"paced_events": sentPaced.Load(),
		"active":       active.Load(),
		"lag_p50_us":   lag.quantile(0.50),
		"lag_p99_us":   lag.quantile(0.99),
		"lag_p999_us":  lag.quantile(0.999),
		"lag_max_us":   lag.max.Load(),
	}
	if r.URL.Query().Get("reset") == "1" {
		lag.reset()
		sentPaced.Store(0)
	}
	b, _ := json.Marshal(out)
	return respond(conn, 200, "application/json", string(b), "")
}
