package main

// `streamload streams`: N concurrent SSE streams, paced by the upstream, each
// on its own connection, opened at a steady rate (the ramp). After the ramp
// and a settling time comes the measuring window: every content event read
// in it contributes its delay, the client's read time minus the upstream's
// send time written in the event. The client prints `window-start` and
// `window-end` lines as the window opens and closes (so that the caller can
// sample the processes' CPU and memory), then one `result {json}` line.

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"net"
	"net/url"
	"os"
	"runtime"
	"sort"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"
)

type streamStats struct {
	lat          []int32 // µs, events read in the window
	windowEvents int64
	events       int64 // content events read
	wanted       int64
	done         bool // read `data: [DONE]`
	status       int
	err          string
	eventBytes   int
	firstEventAt int64
}

// sseReader decodes an HTTP/1.1 response (head, then a chunked,
// Content-Length or close-delimited body) fed in pieces, and calls onEvent
// for each complete SSE event with the time of the read that completed it.
type sseReader struct {
	headDone  bool
	head      []byte
	status    int
	chunked   bool
	remaining int64 // Content-Length body: bytes left; -1 when close-delimited
	state     int
	chunkLeft int64
	line      []byte
	pending   []byte
	finished  bool
	onEvent   func(ev []byte, now int64)
}

const (
	stSize = iota
	stData
	stDataEnd
	stTrailer
)

var errBadResponse = fmt.Errorf("malformed response")

func (r *sseReader) feed(data []byte, now int64) error {
	if !r.headDone {
		r.head = append(r.head, data...)
		i := bytes.Index(r.head, []byte("\r\n\r\n"))
		if i < 0 {
			if len(r.head) > 64<<10 {
				return errBadResponse
			}
			return nil
		}
		if err := r.parseHead(r.head[:i]); err != nil {
			return err
		}
		r.headDone = true
		data = r.head[i+4:]
		if r.status != 200 {
			return nil
		}
	}
	if !r.chunked {
		if r.remaining >= 0 && int64(len(data)) > r.remaining {
			data = data[:r.remaining]
		}
		r.body(data, now)
		if r.remaining >= 0 {
			r.remaining -= int64(len(data))
			if r.remaining == 0 {
				r.finished = true
			}
		}
		return nil
	}
	for len(data) > 0 && !r.finished {
		switch r.state {
		case stSize, stTrailer:
			i := bytes.IndexByte(data, '\n')
			if i < 0 {
				r.line = append(r.line, data...)
				if len(r.line) > 4096 {
					return errBadResponse
				}
				return nil
			}
			line := append(r.line, data[:i]...)
			data = data[i+1:]
			r.line = r.line[:0]
			line = bytes.TrimRight(line, "\r")
			if r.state == stTrailer {
				if len(line) == 0 {
					r.finished = true
				}
				continue
			}
			if j := bytes.IndexByte(line, ';'); j >= 0 {
				line = line[:j]
			}
			n, err := strconv.ParseInt(string(bytes.TrimSpace(line)), 16, 64)
			if err != nil {
				return errBadResponse
			}
			if n == 0 {
				r.state = stTrailer
			} else {
				r.chunkLeft, r.state = n, stData
			}
		case stData:
			take := data
			if int64(len(take)) > r.chunkLeft {
				take = take[:r.chunkLeft]
			}
			r.body(take, now)
			data = data[len(take):]
			r.chunkLeft -= int64(len(take))
			if r.chunkLeft == 0 {
				r.state = stDataEnd
			}
		case stDataEnd:
			i := bytes.IndexByte(data, '\n')
			if i < 0 {
				return nil
			}
			data = data[i+1:]
			r.state = stSize
		}
	}
	return nil
}

func (r *sseReader) parseHead(head []byte) error {
	lines := bytes.Split(head, []byte("\r\n"))
	parts := bytes.SplitN(lines[0], []byte(" "), 3)
	if len(parts) < 2 || !bytes.HasPrefix(parts[0], []byte("HTTP/1.")) {
		return errBadResponse
	}
	status, err := strconv.Atoi(string(parts[1]))
	if err != nil {
		return errBadResponse
	}
	r.status = status
	r.remaining = -1
	for _, l := range lines[1:] {
		name, value, ok := bytes.Cut(l, []byte(":"))
		if !ok {
			continue
		}
		value = bytes.TrimSpace(value)
		switch string(bytes.ToLower(bytes.TrimSpace(name))) {
		case "transfer-encoding":
			r.chunked = bytes.Contains(bytes.ToLower(value), []byte("chunked"))
		case "content-length":
			n, err := strconv.ParseInt(string(value), 10, 64)
			if err != nil {
				return errBadResponse
			}
			r.remaining = n
		}
	}
	if r.chunked {
		r.remaining = -1
	}
	return nil
}

func (r *sseReader) body(data []byte, now int64) {
	r.pending = append(r.pending, data...)
	start := 0
	for {
		i := bytes.Index(r.pending[start:], []byte("\n\n"))
		if i < 0 {
			break
		}
		r.onEvent(r.pending[start:start+i+2], now)
		start += i + 2
	}
	if start > 0 {
		n := copy(r.pending, r.pending[start:])
		r.pending = r.pending[:n]
	}
}

var (
	contentKey = []byte(`"content":"`)
	doneEvent  = []byte("data: [DONE]")
)

// eventTime is the send time a paced content event carries, or 0.
func eventTime(ev []byte) int64 {
	i := bytes.Index(ev, contentKey)
	if i < 0 {
		return 0
	}
	var t int64
	for _, c := range ev[i+len(contentKey):] {
		if c < '0' || c > '9' {
			break
		}
		t = t*10 + int64(c-'0')
	}
	return t
}

type streamsConfig struct {
	addr                   syscall.SockaddrInet4
	host, path, model      string
	rate                   float64
	eventBytes             int
	windowStart, windowEnd int64
	deadline               int64
	tail                   int64
}

// A stream of the client: its socket is read by the event loop.
type clientStream struct {
	fd        int
	reader    sseReader
	st        *streamStats
	connected bool // the request is sent
	opened    bool // the response head is read
	closed    bool
	since     int64 // connect started
}

var openStreams atomic.Int64

// startConnect opens a non-blocking socket and starts connecting; the event
// loop sends the request once the socket is writable.
func startConnect(cfg *streamsConfig) (int, error) {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC|syscall.SOCK_NONBLOCK, 0)
	if err != nil {
		return -1, fmt.Errorf("socket: %s", errKind(err))
	}
	syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1)
	err = syscall.Connect(fd, &cfg.addr)
	if err != nil && err != syscall.EINPROGRESS && err != syscall.EINTR {
		syscall.Close(fd)
		return -1, fmt.Errorf("connect: %s", errKind(err))
	}
	return fd, nil
}

func request(cfg *streamsConfig, st *streamStats) []byte {
	body := `{"model":"` + cfg.model + `","stream":true,"stream_options":{"include_usage":true},` +
		`"messages":[{"role":"user","content":"Write a long story about a lighthouse."}]}`
	return []byte("POST " + cfg.path + " HTTP/1.1\r\nHost: " + cfg.host + "\r\nContent-Type: application/json\r\n" +
		"Accept: text/event-stream\r\nx-load-events: " + strconv.FormatInt(st.wanted, 10) +
		"\r\nx-load-rate: " + strconv.FormatFloat(cfg.rate, 'f', -1, 64) +
		"\r\nx-load-event-bytes: " + strconv.Itoa(cfg.eventBytes) +
		"\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body)
}

// onConnected sends the request once the connection is up. False when the
// connection failed.
func (cs *clientStream) onConnected(cfg *streamsConfig, epfd int, index int) bool {
	if soErr, err := syscall.GetsockoptInt(cs.fd, syscall.SOL_SOCKET, syscall.SO_ERROR); err != nil || soErr != 0 {
		if err == nil {
			err = syscall.Errno(soErr)
		}
		cs.st.err = "connect: " + errKind(err)
		return false
	}
	req := request(cfg, cs.st)
	for len(req) > 0 { // a few hundred bytes: the socket takes them at once
		n, err := syscall.Write(cs.fd, req)
		if err == syscall.EINTR || err == syscall.EAGAIN {
			continue
		}
		if err != nil {
			cs.st.err = "write: " + errKind(err)
			return false
		}
		req = req[n:]
	}
	cs.connected = true
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP, Fd: int32(index)}
	if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_MOD, cs.fd, &ev); err != nil {
		cs.st.err = "epoll: " + err.Error()
		return false
	}
	return true
}

func newClientStream(cfg *streamsConfig, st *streamStats, fd int) *clientStream {
	period := float64(time.Second) / cfg.rate
	cs := &clientStream{fd: fd, st: st, since: mono()}
	st.lat = make([]int32, 0, int(float64(cfg.windowEnd-cfg.windowStart)/period)+16)
	cs.reader.onEvent = func(ev []byte, now int64) {
		if t := eventTime(ev); t > 0 {
			if st.events == 0 {
				st.eventBytes = len(ev)
				st.firstEventAt = now
			}
			st.events++
			if now >= cfg.windowStart && now < cfg.windowEnd {
				st.windowEvents++
				st.lat = append(st.lat, int32((now-t)/1000))
			}
		} else if bytes.HasPrefix(ev, doneEvent) {
			st.done = true
		}
	}
	return cs
}

// onReadable reads what the socket holds (one read) and feeds it to the
// stream's parser. True when the stream is over.
func (cs *clientStream) onReadable(buf []byte) bool {
	n, err := syscall.Read(cs.fd, buf)
	now := mono()
	if err == syscall.EAGAIN || err == syscall.EINTR {
		return false
	}
	st, r := cs.st, &cs.reader
	if n > 0 {
		if ferr := r.feed(buf[:n], now); ferr != nil {
			st.err = ferr.Error()
			return true
		}
		if r.headDone && !cs.opened {
			st.status = r.status
			if r.status != 200 {
				st.err = "status " + strconv.Itoa(r.status)
				return true
			}
			cs.opened = true
			openStreams.Add(1)
		}
		return r.finished
	}
	if err != nil {
		st.err = "read: " + errKind(err)
	} else if !(r.headDone && !r.chunked && r.remaining < 0) { // n == 0: EOF
		st.err = "read: connection closed"
	}
	return true
}

func (cs *clientStream) close() {
	if cs.closed {
		return
	}
	cs.closed = true
	if cs.opened {
		openStreams.Add(-1)
	}
	syscall.Close(cs.fd)
}

func errKind(err error) string {
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return "timeout"
	}
	s := err.Error()
	if i := bytes.LastIndex([]byte(s), []byte(": ")); i >= 0 {
		s = s[i+2:]
	}
	return s
}

func percentile(sorted []int32, q float64) int64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	if i < 0 {
		i = 0
	}
	return int64(sorted[i])
}

func runStreams(args []string) {
	fs := flag.NewFlagSet("streams", flag.ExitOnError)
	rawURL := fs.String("url", "", "http://HOST:PORT/v1/chat/completions")
	n := fs.Int("n", 100, "concurrent streams")
	rate := fs.Float64("rate", 50, "events per second per stream")
	eventBytes := fs.Int("event-bytes", 120, "bytes per content event")
	rampRate := fs.Float64("ramp-rate", 250, "new streams per second while ramping up")
	settle := fs.Duration("settle", 3*time.Second, "after the ramp, before the window")
	duration := fs.Duration("duration", 30*time.Second, "measuring window")
	tail := fs.Duration("tail", time.Second, "streams end this long after the window")
	drain := fs.Duration("drain", 30*time.Second, "after the window, time left for streams to finish")
	model := fs.String("model", "gpt-load", "model")
	connectTimeout := fs.Duration("connect-timeout", 10*time.Second, "per connection")
	fs.Parse(args)
	u, err := url.Parse(*rawURL)
	if err != nil || u.Host == "" {
		fmt.Fprintln(os.Stderr, "bad -url")
		os.Exit(2)
	}
	tcp, err := net.ResolveTCPAddr("tcp4", u.Host)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bad -url:", err)
		os.Exit(2)
	}
	cfg := &streamsConfig{host: u.Host, path: u.Path, model: *model, rate: *rate,
		eventBytes: *eventBytes, tail: int64(*tail)}
	cfg.addr.Port = tcp.Port
	copy(cfg.addr.Addr[:], tcp.IP.To4())
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		fmt.Fprintln(os.Stderr, "epoll:", err)
		os.Exit(1)
	}

	t0 := mono()
	ramp := int64(float64(*n) / *rampRate * 1e9)
	cfg.windowStart = t0 + ramp + int64(*settle)
	cfg.windowEnd = cfg.windowStart + int64(*duration)
	cfg.deadline = cfg.windowEnd + int64(*drain)

	stats := make([]streamStats, *n)
	streams := make([]atomic.Pointer[clientStream], *n)
	var ended atomic.Int64 // streams over (failed to start, or read to their end)
	marks := make(chan struct{})
	go func() {
		sleepUntil(cfg.windowStart)
		fmt.Printf("window-start open=%d\n", openStreams.Load())
		sleepUntil(cfg.windowEnd)
		fmt.Printf("window-end open=%d\n", openStreams.Load())
		close(marks)
	}()
	// The ramp: connections opened one by one at a steady rate.
	go func() {
		period := float64(time.Second) / cfg.rate
		for i := 0; i < *n; i++ {
			start := t0 + int64(i)*ramp/int64(*n)
			sleepUntil(start)
			st := &stats[i]
			st.wanted = int64(math.Ceil(float64(cfg.windowEnd+cfg.tail-start) / period))
			if st.wanted < 1 {
				st.wanted = 1
			}
			fd, err := startConnect(cfg)
			if err != nil {
				st.err = err.Error()
				ended.Add(1)
				continue
			}
			cs := newClientStream(cfg, st, fd)
			streams[i].Store(cs)
			ev := syscall.EpollEvent{Events: syscall.EPOLLOUT | syscall.EPOLLIN | syscall.EPOLLRDHUP, Fd: int32(i)}
			if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
				st.err = "epoll: " + err.Error()
				cs.close()
				ended.Add(1)
			}
		}
	}()
	// The event loop: one thread reads every stream.
	runtime.LockOSThread()
	ready := make([]syscall.EpollEvent, 512)
	buf := make([]byte, 64<<10)
	lastCheck := mono()
	for ended.Load() < int64(*n) && mono() < cfg.deadline {
		k, err := syscall.EpollWait(epfd, ready, 100)
		if err != nil && err != syscall.EINTR {
			fmt.Fprintln(os.Stderr, "epoll_wait:", err)
			os.Exit(1)
		}
		for _, ev := range ready[:max(k, 0)] {
			cs := streams[ev.Fd].Load()
			if cs == nil || cs.closed {
				continue
			}
			if !cs.connected {
				if !cs.onConnected(cfg, epfd, int(ev.Fd)) {
					cs.close()
					ended.Add(1)
				}
				continue
			}
			if cs.onReadable(buf) {
				cs.close()
				ended.Add(1)
			}
		}
		if now := mono(); now-lastCheck > int64(time.Second) {
			lastCheck = now
			for i := range streams {
				if cs := streams[i].Load(); cs != nil && !cs.closed && !cs.connected &&
					now-cs.since > int64(*connectTimeout) {
					cs.st.err = "connect: timeout"
					cs.close()
					ended.Add(1)
				}
			}
		}
	}
	for i := range streams {
		cs := streams[i].Load()
		if cs != nil && !cs.closed {
			if cs.st.err == "" {
				cs.st.err = "cut at the end of the drain time"
			}
			cs.close()
		} else if cs == nil && stats[i].err == "" {
			stats[i].err = "not started before the end of the drain time"
		}
	}
	<-marks
	end := mono()

	var all []int32
	out := map[string]any{}
	errs := map[string]int{}
	var opened, complete, short, failed, windowEvents, events, evBytes int
	var firstAt int64
	for i := range stats {
		st := &stats[i]
		all = append(all, st.lat...)
		windowEvents += int(st.windowEvents)
		events += int(st.events)
		if st.status == 200 {
			opened++
		}
		switch {
		case st.status == 200 && st.done && st.events == st.wanted && st.err == "":
			complete++
		case st.status == 200:
			short++
		default:
			failed++
		}
		if st.err != "" {
			errs[st.err]++
		}
		if evBytes == 0 && st.eventBytes > 0 {
			evBytes = st.eventBytes
		}
		if st.firstEventAt > 0 && (firstAt == 0 || st.firstEventAt < firstAt) {
			firstAt = st.firstEventAt
		}
	}
	sort.Slice(all, func(a, b int) bool { return all[a] < all[b] })
	window := float64(cfg.windowEnd-cfg.windowStart) / 1e9
	out["streams"] = *n
	out["opened"] = opened
	out["complete"] = complete
	out["short"] = short
	out["failed"] = failed
	out["errors"] = errs
	out["events"] = events
	out["window_s"] = window
	out["window_events"] = windowEvents
	out["offered_events_per_s"] = float64(*n) * *rate
	out["events_per_s"] = float64(windowEvents) / window
	out["event_bytes"] = evBytes
	out["p50_us"] = percentile(all, 0.50)
	out["p90_us"] = percentile(all, 0.90)
	out["p99_us"] = percentile(all, 0.99)
	out["p999_us"] = percentile(all, 0.999)
	if len(all) > 0 {
		out["max_us"] = all[len(all)-1]
	}
	out["after_window_s"] = float64(end-cfg.windowEnd) / 1e9
	b, _ := json.Marshal(out)
	fmt.Printf("result %s\n", b)
}
