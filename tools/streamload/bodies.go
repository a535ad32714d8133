package main

// `streamload fetch`: bulk SSE streams, one at a time on one keep-alive
// connection, each read to its end; prints the seconds and bytes of each and
// a CRC of the body (equal CRCs: the same bytes arrived).
//
// `streamload post`: one request body, POSTed sequentially on one keep-alive
// connection; prints the time of each request, from the first byte written to
// the last byte of the answer read. A `@@@@@@@@` in the body is replaced by
// the request's sequence number, so that no two bodies are the same.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

type headerList []string

func (h *headerList) String() string     { return strings.Join(*h, ", ") }
func (h *headerList) Set(v string) error { *h = append(*h, v); return nil }

func dial(rawURL string) (net.Conn, *bufio.Reader, *url.URL) {
	u, err := url.Parse(rawURL)
	if err != nil || u.Host == "" {
		fmt.Fprintln(os.Stderr, "bad -url")
		os.Exit(2)
	}
	conn, err := net.DialTimeout("tcp", u.Host, 10*time.Second)
	if err != nil {
		fmt.Fprintln(os.Stderr, "connect:", err)
		os.Exit(1)
	}
	return conn, bufio.NewReaderSize(conn, 256<<10), u
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	os.Exit(1)
}

func runFetch(args []string) {
	fs := flag.NewFlagSet("fetch", flag.ExitOnError)
	rawURL := fs.String("url", "", "http://HOST:PORT/v1/chat/completions")
	total := fs.Int64("bytes", 50<<20, "bytes of content events per stream")
	eventBytes := fs.Int("event-bytes", 1024, "bytes per content event")
	writeBytes := fs.Int("write-bytes", 65536, "upstream bytes per write")
	n := fs.Int("n", 3, "streams to time")
	warmup := fs.Int("warmup", 1, "streams read first and not timed")
	model := fs.String("model", "gpt-load", "model")
	fs.Parse(args)
	conn, br, u := dial(*rawURL)
	defer conn.Close()
	body := `{"model":"` + *model + `","stream":true,"stream_options":{"include_usage":true},` +
		`"messages":[{"role":"user","content":"Print the whole file."}]}`
	req := []byte("POST " + u.Path + " HTTP/1.1\r\nHost: " + u.Host + "\r\nContent-Type: application/json\r\n" +
		"x-load-bytes: " + strconv.FormatInt(*total, 10) + "\r\nx-load-event-bytes: " + strconv.Itoa(*eventBytes) +
		"\r\nx-load-write-bytes: " + strconv.Itoa(*writeBytes) +
		"\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body)
	buf := make([]byte, 256<<10)
	table := crc32.MakeTable(crc32.Castagnoli)
	var secs, ttfbs []float64
	var sizes []int64
	var crcs []string
	for i := 0; i < *warmup+*n; i++ {
		t0 := time.Now()
		if _, err := conn.Write(req); err != nil {
			fail("write: %v", err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			fail("response: %v", err)
		}
		ttfb := time.Since(t0)
		if resp.StatusCode != 200 {
			fail("status %d", resp.StatusCode)
		}
		h := crc32.New(table)
		var size int64
		var last []byte
		for {
			k, err := resp.Body.Read(buf)
			if k > 0 {
				h.Write(buf[:k])
				size += int64(k)
				last = append(last, buf[:k]...)
				if len(last) > 64 {
					last = last[len(last)-64:]
				}
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				fail("body: %v", err)
			}
		}
		elapsed := time.Since(t0)
		if !bytes.HasSuffix(last, []byte("data: [DONE]\n\n")) {
			fail("stream did not end with data: [DONE]")
		}
		if i >= *warmup {
			secs = append(secs, elapsed.Seconds())
			ttfbs = append(ttfbs, ttfb.Seconds())
			sizes = append(sizes, size)
			crcs = append(crcs, fmt.Sprintf("%08x", h.Sum32()))
		}
	}
	out, _ := json.Marshal(map[string]any{"seconds": secs, "ttfb_s": ttfbs, "bytes": sizes, "crc32c": crcs})
	fmt.Printf("result %s\n", out)
}

func runPost(args []string) {
	fs := flag.NewFlagSet("post", flag.ExitOnError)
	rawURL := fs.String("url", "", "http://HOST:PORT/v1/messages")
	bodyFile := fs.String("body", "", "request body file")
	n := fs.Int("n", 200, "requests to time")
	warmup := fs.Int("warmup", 10, "requests sent first and not timed")
	seq := fs.Int("seq", 0, "first sequence number written into the body")
	var headers headerList
	fs.Var(&headers, "header", "extra request header, \"Name: value\" (repeatable)")
	fs.Parse(args)
	body, err := os.ReadFile(*bodyFile)
	if err != nil {
		fail("%v", err)
	}
	conn, br, u := dial(*rawURL)
	defer conn.Close()
	head := "POST " + u.Path + " HTTP/1.1\r\nHost: " + u.Host + "\r\nContent-Type: application/json\r\n"
	for _, h := range headers {
		head += h + "\r\n"
	}
	head += "Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n"
	req := append([]byte(head), body...)
	marker := bytes.Index(req, []byte("@@@@@@@@"))
	want := strconv.Itoa(len(body))
	var us []int64
	statuses := map[string]int{}
	mismatched := 0
	for i := 0; i < *warmup+*n; i++ {
		if marker >= 0 {
			copy(req[marker:], fmt.Sprintf("%08d", (*seq+i)%100000000))
		}
		t0 := time.Now()
		if _, err := conn.Write(req); err != nil {
			fail("write: %v", err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			fail("response: %v", err)
		}
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			fail("body: %v", err)
		}
		elapsed := time.Since(t0)
		statuses[strconv.Itoa(resp.StatusCode)]++
		if resp.Header.Get("x-load-received") != want {
			mismatched++
		}
		if resp.Close {
			fail("the server closed the connection (status %d)", resp.StatusCode)
		}
		if i >= *warmup {
			us = append(us, elapsed.Microseconds())
		}
	}
	out, _ := json.Marshal(map[string]any{"us": us, "statuses": statuses, "body_mismatch": mismatched,
		"body_bytes": len(body)})
	fmt.Printf("result %s\n", out)
}
