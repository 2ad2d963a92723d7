package loadtest

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/medianest/hub/events"
	"github.com/medianest/hub/hub/auth"
)

// FanoutOptions configure the fan-out scenario.
type FanoutOptions struct {
	Nodes       int           // hub processes, default 1
	Subscribers int           // sockets in the room, default 1,000
	Rate        int           // messages published per second, default 100
	Duration    time.Duration // default 10s
	Via         string        // "nats" (hub.emit) or "client" (media-status), default "nats"
	Size        int           // payload bytes, default 100
	Ramp        bool          // find the highest rate with no loss and p99 under MaxP99
	MaxP99      time.Duration // ramp bound, default 100ms
	Concurrency int           // connects in flight, default 100
}

// FanoutResult is one run's report.
type FanoutResult struct {
	Scenario      string      `json:"scenario"`
	Nodes         int         `json:"nodes"`
	Via           string      `json:"via"`
	Subscribers   int         `json:"subscribers"`
	Rate          int         `json:"publish_rate"`
	Published     int         `json:"published"`
	Expected      int64       `json:"expected_deliveries"`
	Delivered     int64       `json:"delivered"`
	Lost          int64       `json:"lost"`
	DeliveriesSec float64     `json:"deliveries_per_second"`
	Latency       Percentiles `json:"latency"`
	LoadgenCPUus  float64     `json:"loadgen_cpu_us_per_delivery"`
	NodeCPUus     float64     `json:"node_cpu_us_per_delivery"`
	Kicked        int64       `json:"subscribers_disconnected"`
}

// RunFanout starts hub processes on an embedded NATS server, puts the
// subscribers in one media room spread over the nodes, publishes at the
// rate for the duration, and counts deliveries and their latency (the
// publish time rides in the payload). With Ramp it repeats at rising rates
// and returns every step.
func RunFanout(ctx context.Context, o FanoutOptions, log zerolog.Logger) ([]FanoutResult, error) {
	if o.Nodes <= 0 {
		o.Nodes = 1
	}
	if o.Subscribers <= 0 {
		o.Subscribers = 1000
	}
	if o.Rate <= 0 {
		o.Rate = 100
	}
	if o.Duration <= 0 {
		o.Duration = 10 * time.Second
	}
	if o.Via == "" {
		o.Via = "nats"
	}
	if o.Size <= 0 {
		o.Size = 100
	}
	if o.MaxP99 <= 0 {
		o.MaxP99 = 100 * time.Millisecond
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 100
	}
	b, err := newBench(ctx, o.Nodes, "", log, "MEDIANEST_SESSION_MODE=stateless", "MEDIANEST_COMPONENTS=hub", "MEDIANEST_SEND_QUEUE=1024")
	if err != nil {
		return nil, err
	}
	defer b.close()
	nodes, ns := b.nodes, b.ns
	poller, err := NewPoller(2)
	if err != nil {
		return nil, err
	}
	defer poller.Close()

	// Subscribers.
	// Each subscriber records into its own slot: no lock shared by a
	// thousand readers on the delivery path.
	type recorder struct {
		n   atomic.Int64
		mu  sync.Mutex // taken by the reader and, between steps, by the tally
		lat []time.Duration
	}
	recs := make([]*recorder, o.Subscribers)
	marker := []byte(`"sent":`)
	record := func(rec *recorder, frame []byte) {
		rec.n.Add(1)
		i := bytes.Index(frame, marker)
		if i < 0 {
			return
		}
		j := i + len(marker)
		var sent int64
		for k := j; k < len(frame) && frame[k] >= '0' && frame[k] <= '9'; k++ {
			sent = sent*10 + int64(frame[k]-'0')
		}
		d := time.Since(time.Unix(0, sent))
		rec.mu.Lock()
		rec.lat = append(rec.lat, d)
		rec.mu.Unlock()
	}
	delivered := func() int64 {
		var t int64
		for _, r := range recs {
			t += r.n.Load()
		}
		return t
	}
	clients := make([]*Client, o.Subscribers)
	sem := make(chan struct{}, o.Concurrency)
	var wg sync.WaitGroup
	var firstErr atomic.Value
	for i := range clients {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			tok, _ := auth.Mint([]byte(benchSecret), auth.MintOptions{UserID: fmt.Sprint("sub-", i), Roles: []string{"user"}, Issuer: "medianest", Audience: "medianest-users", TTL: 2 * time.Hour})
			c, err := DialFrom(ctx, nodes[i%len(nodes)].url, "/media", tok, SourceFor(i))
			if err != nil {
				firstErr.CompareAndSwap(nil, err)
				return
			}
			joined := make(chan struct{})
			var once sync.Once
			rec := &recorder{}
			recs[i] = rec
			c.OnEvent = func(frame []byte) {
				if bytes.HasPrefix(frame, []byte(`["joined-room"`)) {
					once.Do(func() { close(joined) })
					return
				}
				if bytes.HasPrefix(frame, []byte(`["media-status"`)) {
					record(rec, frame)
				}
			}
			if err := poller.Add(c); err != nil {
				firstErr.CompareAndSwap(nil, err)
				return
			}
			if err := c.Emit("join-media-room", map[string]string{"roomId": "bench"}); err != nil {
				firstErr.CompareAndSwap(nil, err)
				return
			}
			select {
			case <-joined:
			case <-time.After(10 * time.Second):
				firstErr.CompareAndSwap(nil, fmt.Errorf("socket %d: no joined-room", i))
			}
			clients[i] = c
		}()
	}
	wg.Wait()
	if e := firstErr.Load(); e != nil {
		return nil, e.(error)
	}
	defer func() {
		for _, c := range clients {
			if c != nil {
				c.Close()
			}
		}
	}()
	log.Info().Int("subscribers", o.Subscribers).Msg("subscribers in the room")

	// Publishers: NATS (a backend) or one extra client (media-status).
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	var pubClient *Client
	if o.Via == "client" {
		tok, _ := auth.Mint([]byte(benchSecret), auth.MintOptions{UserID: "publisher", Roles: []string{"user"}, Issuer: "medianest", Audience: "medianest-users"})
		if pubClient, err = Dial(ctx, nodes[0].url, "/media", tok); err != nil {
			return nil, err
		}
		defer pubClient.Close()
		if err := poller.Add(pubClient); err != nil {
			return nil, err
		}
		if err := pubClient.Emit("join-media-room", map[string]string{"roomId": "bench"}); err != nil {
			return nil, err
		}
		time.Sleep(200 * time.Millisecond)
	}
	subject, _ := events.Subjects{}.Emit("/media", "media:bench")
	pad := string(bytes.Repeat([]byte("x"), max(o.Size-40, 1)))

	run := func(rate int) FanoutResult {
		for _, r := range recs {
			r.n.Store(0)
			r.mu.Lock()
			r.lat = r.lat[:0]
			r.mu.Unlock()
		}
		var kicked0 int64
		for _, c := range clients {
			if c.Kicked.Load() > 0 {
				kicked0++
			}
		}
		nodeCPU0 := nodesCPU(nodes)
		cpu0 := cpuTime()
		start := time.Now()
		n := int(float64(rate) * o.Duration.Seconds())
		for i := range n {
			if pause := time.Until(start.Add(time.Duration(i) * time.Second / time.Duration(rate))); pause > 0 {
				time.Sleep(pause)
			}
			sent := time.Now().UnixNano()
			if o.Via == "client" {
				_ = pubClient.Emit("media-status", map[string]any{"roomId": "bench", "sent": sent, "pad": pad})
			} else {
				body := fmt.Sprintf(`{"event":"media-status","data":{"sent":%d,"pad":"%s"}}`, sent, pad)
				_ = nc.Publish(subject, []byte(body))
			}
		}
		expected := int64(n) * int64(o.Subscribers)
		deadline := time.Now().Add(5 * time.Second)
		for delivered() < expected && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		elapsed := time.Since(start)
		got := delivered()
		res := FanoutResult{
			Scenario: "fanout", Nodes: o.Nodes, Via: o.Via, Subscribers: o.Subscribers, Rate: rate, Published: n,
			Expected: expected, Delivered: got, Lost: expected - got, DeliveriesSec: float64(got) / elapsed.Seconds(),
		}
		if got > 0 {
			res.LoadgenCPUus = float64((cpuTime() - cpu0).Microseconds()) / float64(got)
			res.NodeCPUus = float64((nodesCPU(nodes) - nodeCPU0).Microseconds()) / float64(got)
		}
		for _, c := range clients {
			if c.Kicked.Load() > 0 {
				res.Kicked++
			}
		}
		res.Kicked -= kicked0
		var lat []time.Duration
		for _, r := range recs {
			r.mu.Lock()
			lat = append(lat, r.lat...)
			r.mu.Unlock()
		}
		res.Latency = Summarise(lat)
		return res
	}

	if !o.Ramp {
		return []FanoutResult{run(o.Rate)}, nil
	}
	var out []FanoutResult
	rate := o.Rate
	for range 12 {
		r := run(rate)
		out = append(out, r)
		log.Info().Int("rate", rate).Int64("lost", r.Lost).Float64("p99_ms", r.Latency.P99).Msg("ramp step")
		if r.Lost > 0 || r.Latency.P99 > float64(o.MaxP99.Microseconds())/1000 {
			break
		}
		rate = rate * 3 / 2
	}
	return out, nil
}

// nodesCPU is the hub processes' CPU time so far, from /proc.
func nodesCPU(nodes []*node) time.Duration {
	var total time.Duration
	for _, n := range nodes {
		total += processCPU(n.cmd.Process.Pid)
	}
	return total
}
