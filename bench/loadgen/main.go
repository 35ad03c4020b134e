// Command loadgen is the bench's open-loop load generator (issue 17, item 4).
//
// Rate mode sends GET requests at a constant rate over a pool of keep-alive connections. The
// schedule comes from a kernel timerfd (microsecond precision; Go's own timers wake on
// millisecond epoll timeouts), and every latency is measured from the request's scheduled
// send time, not from when a connection was free to send it: a stall delays the requests
// behind it and they are counted late (no coordinated omission, as in wrk2).
//
// Burst mode sends N requests at the same instant, one per connection, and measures each
// from that instant: the stampede of first requests. With -preconnect the connections are
// open before the burst, so connection set-up is left out of the figure.
//
// It prints one JSON object. Built by bench/latency.ts into bench/.tmp with the standard
// library only.
package main

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

type headerList []string

func (h *headerList) String() string     { return strings.Join(*h, ", ") }
func (h *headerList) Set(v string) error { *h = append(*h, v); return nil }

type summary struct {
	Count int     `json:"count"`
	P50   float64 `json:"p50"`
	P90   float64 `json:"p90"`
	P99   float64 `json:"p99"`
	P999  float64 `json:"p999"`
	Max   float64 `json:"max"`
}

type result struct {
	Mode        string  `json:"mode"`
	Sent        int64   `json:"sent"`
	OK          int64   `json:"ok"`
	Non2xx      int64   `json:"non2xx"`
	Errors      int64   `json:"errors"`
	Seconds     float64 `json:"seconds"`
	Rate        float64 `json:"achievedRate"`
	Connections int64   `json:"connectionsOpened"`
	// Latency from the scheduled send time, in microseconds.
	Latency summary `json:"latencyUs"`
	// How late the generator's own timer handed each request over, in microseconds (rate
	// mode); how late each goroutine woke after the burst's start (burst mode). Waiting for a
	// free connection is not in it: that is the target's doing, and is in Latency.
	SendLag summary `json:"sendLagUs"`
	// The generator's own CPU time (user + system), to tell its share of a busy core.
	CPUSeconds float64 `json:"cpuSeconds"`
}

type target struct {
	addr    string
	request []byte
}

type sample struct{ latency, lag time.Duration }

type recorder struct {
	mu      sync.Mutex
	samples []sample
	ok      int64
	non2xx  int64
	errors  int64
	opened  int64
}

func (r *recorder) add(s sample, status int, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case err != nil:
		r.errors++
		return
	case status < 200 || status > 299:
		r.non2xx++
	default:
		r.ok++
	}
	r.samples = append(r.samples, s)
}

type conn struct {
	c  net.Conn
	br *bufio.Reader
}

func (t *target) dial(rec *recorder) (*conn, error) {
	c, err := net.Dial("tcp", t.addr)
	if err != nil {
		return nil, err
	}
	c.(*net.TCPConn).SetNoDelay(true)
	atomic.AddInt64(&rec.opened, 1)
	return &conn{c: c, br: bufio.NewReaderSize(c, 64*1024)}, nil
}

// roundTrip sends the request and reads the whole response; it reports whether the connection
// can be used again.
func (c *conn) roundTrip(t *target) (int, bool, error) {
	if _, err := c.c.Write(t.request); err != nil {
		return 0, false, err
	}
	res, err := http.ReadResponse(c.br, nil)
	if err != nil {
		return 0, false, err
	}
	_, err = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if err != nil {
		return 0, false, err
	}
	return res.StatusCode, !res.Close, nil
}

// ticker delivers the number of timer expirations since the last read: a timerfd read through
// Go's poller, so the wake-up is the kernel's hrtimer, not a millisecond epoll timeout.
type ticker struct{ f *os.File }

func newTicker(interval time.Duration) (*ticker, error) {
	const clockMonotonic, tfdNonblock, tfdCloexec = 1, syscall.O_NONBLOCK, syscall.O_CLOEXEC
	fd, _, errno := syscall.Syscall(syscall.SYS_TIMERFD_CREATE, clockMonotonic, uintptr(tfdNonblock|tfdCloexec), 0)
	if errno != 0 {
		return nil, errno
	}
	spec := [2]syscall.Timespec{syscall.NsecToTimespec(interval.Nanoseconds()), syscall.NsecToTimespec(interval.Nanoseconds())}
	if _, _, errno := syscall.Syscall6(syscall.SYS_TIMERFD_SETTIME, fd, 0, uintptr(unsafe.Pointer(&spec)), 0, 0, 0); errno != 0 {
		return nil, errno
	}
	return &ticker{f: os.NewFile(fd, "timerfd")}, nil
}

func (t *ticker) wait() (uint64, error) {
	var buf [8]byte
	if _, err := io.ReadFull(t.f, buf[:]); err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(buf[:]), nil
}

func runRate(t *target, rate float64, duration, warmup time.Duration, connections int, rec *recorder) (float64, int64) {
	interval := time.Duration(float64(time.Second) / rate)
	type job struct{ scheduled, dispatched time.Time }
	jobs := make(chan job, int(rate*(duration+warmup).Seconds())+1024)
	measureFrom := time.Now().Add(warmup)
	var wg sync.WaitGroup
	for i := 0; i < connections; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var c *conn
			for j := range jobs {
				var status int
				var err error
				if c == nil {
					c, err = t.dial(rec)
				}
				reuse := false
				if err == nil {
					status, reuse, err = c.roundTrip(t)
				}
				if !reuse && c != nil {
					c.c.Close()
					c = nil
				}
				if !j.scheduled.Before(measureFrom) {
					rec.add(sample{latency: time.Since(j.scheduled), lag: j.dispatched.Sub(j.scheduled)}, status, err)
				}
			}
			if c != nil {
				c.c.Close()
			}
		}()
	}
	// Taken before the timer is armed: every request counts as due no later than its tick.
	start := time.Now()
	tick, err := newTicker(interval)
	if err != nil {
		fmt.Fprintln(os.Stderr, "timerfd:", err)
		os.Exit(1)
	}
	total := int64(rate * (duration + warmup).Seconds())
	var sent int64
	for sent < total {
		n, err := tick.wait()
		if err != nil {
			fmt.Fprintln(os.Stderr, "timerfd read:", err)
			os.Exit(1)
		}
		now := time.Now()
		for i := uint64(0); i < n && sent < total; i++ {
			sent++
			jobs <- job{scheduled: start.Add(time.Duration(sent) * interval), dispatched: now}
		}
	}
	close(jobs)
	wg.Wait()
	return time.Since(start).Seconds(), sent
}

func runBurst(t *target, n int, preconnect bool, rec *recorder) float64 {
	conns := make([]*conn, n)
	if preconnect {
		for i := range conns {
			c, err := t.dial(rec)
			if err != nil {
				fmt.Fprintln(os.Stderr, "connect:", err)
				os.Exit(1)
			}
			conns[i] = c
		}
	}
	start := make(chan struct{})
	var ready, wg sync.WaitGroup
	var t0 time.Time
	for i := 0; i < n; i++ {
		ready.Add(1)
		wg.Add(1)
		go func(c *conn) {
			defer wg.Done()
			ready.Done()
			<-start
			began := time.Now()
			var status int
			var err error
			if c == nil {
				c, err = t.dial(rec)
			}
			if err == nil {
				status, _, err = c.roundTrip(t)
				c.c.Close()
			}
			rec.add(sample{latency: time.Since(t0), lag: began.Sub(t0)}, status, err)
		}(conns[i])
	}
	ready.Wait()
	t0 = time.Now()
	close(start)
	wg.Wait()
	return time.Since(t0).Seconds()
}

func summarize(values []time.Duration) summary {
	if len(values) == 0 {
		return summary{}
	}
	sort.Slice(values, func(i, j int) bool { return values[i] < values[j] })
	at := func(p float64) float64 {
		i := int(p / 100 * float64(len(values)))
		if i >= len(values) {
			i = len(values) - 1
		}
		return float64(values[i].Nanoseconds()) / 1000
	}
	return summary{Count: len(values), P50: at(50), P90: at(90), P99: at(99), P999: at(99.9), Max: float64(values[len(values)-1].Nanoseconds()) / 1000}
}

func main() {
	rawURL := flag.String("url", "", "target URL (http only)")
	mode := flag.String("mode", "rate", "rate | burst")
	rate := flag.Float64("rate", 1000, "requests per second (rate mode)")
	duration := flag.Duration("duration", 5*time.Second, "measured time (rate mode)")
	warmup := flag.Duration("warmup", time.Second, "unmeasured time before it, at the same rate (rate mode)")
	connections := flag.Int("connections", 16, "keep-alive connections (rate mode)")
	n := flag.Int("n", 1000, "requests at once (burst mode)")
	preconnect := flag.Bool("preconnect", false, "open the connections before the burst (burst mode)")
	var headers headerList
	flag.Var(&headers, "H", "request header 'name: value' (repeatable)")
	flag.Parse()

	u, err := url.Parse(*rawURL)
	if err != nil || u.Scheme != "http" {
		fmt.Fprintln(os.Stderr, "-url must be an http:// URL")
		os.Exit(2)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "GET %s HTTP/1.1\r\nHost: %s\r\n", u.RequestURI(), u.Host)
	for _, h := range headers {
		fmt.Fprintf(&b, "%s\r\n", h)
	}
	b.WriteString("\r\n")
	t := &target{addr: u.Host, request: []byte(b.String())}

	rec := &recorder{}
	res := result{Mode: *mode}
	switch *mode {
	case "rate":
		res.Seconds, res.Sent = runRate(t, *rate, *duration, *warmup, *connections, rec)
		res.Seconds -= warmup.Seconds()
	case "burst":
		res.Seconds = runBurst(t, *n, *preconnect, rec)
		res.Sent = int64(*n)
	default:
		fmt.Fprintln(os.Stderr, "-mode must be rate or burst")
		os.Exit(2)
	}
	latencies := make([]time.Duration, len(rec.samples))
	lags := make([]time.Duration, len(rec.samples))
	for i, s := range rec.samples {
		latencies[i] = s.latency
		lags[i] = s.lag
	}
	res.OK, res.Non2xx, res.Errors, res.Connections = rec.ok, rec.non2xx, rec.errors, rec.opened
	if res.Seconds > 0 {
		res.Rate = float64(len(rec.samples)) / res.Seconds
	}
	res.Latency = summarize(latencies)
	res.SendLag = summarize(lags)
	var usage syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &usage) == nil {
		res.CPUSeconds = float64(usage.Utime.Nano()+usage.Stime.Nano()) / 1e9
	}
	json.NewEncoder(os.Stdout).Encode(res)
}
