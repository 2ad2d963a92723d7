package loadtest

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/medianest/hub/hub/auth"
)

// ConnOptions configure the connect and idle scenarios.
type ConnOptions struct {
	Connections int           // default 5,000 (connect) or 10,000 (idle)
	Concurrency int           // connects in flight, default 100
	Hold        time.Duration // idle: how long to hold them (pings run), default 30s
}

// ConnResult is a connect or idle run's report.
type ConnResult struct {
	Scenario       string  `json:"scenario"`
	Connections    int     `json:"connections"`
	Seconds        float64 `json:"seconds"`
	PerSecond      float64 `json:"connections_per_second"`
	Failed         int64   `json:"failed"`
	NodeRSSBefore  int64   `json:"node_rss_before_bytes,omitempty"`
	NodeRSSAfter   int64   `json:"node_rss_after_bytes,omitempty"`
	NodeRSSEnd     int64   `json:"node_rss_end_bytes,omitempty"`
	RSSPerConnKiB  float64 `json:"node_rss_per_connection_kib,omitempty"`
	LoadgenCPUSecs float64 `json:"loadgen_cpu_seconds"`
	NodeCPUSecs    float64 `json:"node_cpu_seconds"`
	Dropped        int64   `json:"dropped_while_held,omitempty"`
}

// RunConnect opens authenticated /media sockets on one hub process (JWT
// verified, stateless sessions) as fast as the concurrency allows; with
// idle it then holds them and reports the hub's RSS per connection.
func RunConnect(ctx context.Context, o ConnOptions, idle bool, log zerolog.Logger) (ConnResult, error) {
	if o.Connections <= 0 {
		o.Connections = 5000
		if idle {
			o.Connections = 10_000
		}
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 100
	}
	if o.Hold <= 0 {
		o.Hold = 30 * time.Second
	}
	res := ConnResult{Scenario: "connect", Connections: o.Connections}
	if idle {
		res.Scenario = "idle"
	}
	b, err := newBench(ctx, 1, "", log, "MEDIANEST_SESSION_MODE=stateless", "MEDIANEST_COMPONENTS=hub")
	if err != nil {
		return res, err
	}
	defer b.close()
	nodes := b.nodes
	pid := nodes[0].cmd.Process.Pid
	time.Sleep(500 * time.Millisecond)
	res.NodeRSSBefore = rss(pid)

	tokens := make([]string, o.Connections)
	for i := range tokens {
		tokens[i], _ = auth.Mint([]byte(benchSecret), auth.MintOptions{UserID: fmt.Sprint("u", i), Roles: []string{"user"}, Issuer: "medianest", Audience: "medianest-users", TTL: 2 * time.Hour})
	}
	clients := make([]*Client, o.Connections)
	sem := make(chan struct{}, o.Concurrency)
	var wg sync.WaitGroup
	var failed atomic.Int64
	cpu0, node0 := cpuTime(), processCPU(pid)
	start := time.Now()
	for i := range clients {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			c, err := DialFrom(ctx, nodes[0].url, "/media", tokens[i], SourceFor(i))
			if err != nil {
				if failed.Add(1) == 1 {
					log.Warn().Err(err).Msg("connect failed")
				}
				return
			}
			clients[i] = c
			go c.Run()
		}()
	}
	wg.Wait()
	res.Seconds = time.Since(start).Seconds()
	res.PerSecond = float64(o.Connections-int(failed.Load())) / res.Seconds
	res.Failed = failed.Load()
	res.LoadgenCPUSecs = (cpuTime() - cpu0).Seconds()
	res.NodeCPUSecs = (processCPU(pid) - node0).Seconds()
	defer func() {
		for _, c := range clients {
			if c != nil {
				c.Close()
			}
		}
	}()
	if !idle {
		return res, nil
	}
	runtime.GC()
	time.Sleep(2 * time.Second)
	res.NodeRSSAfter = rss(pid)
	res.RSSPerConnKiB = float64(res.NodeRSSAfter-res.NodeRSSBefore) / 1024 / float64(o.Connections-int(res.Failed))
	select {
	case <-time.After(o.Hold):
	case <-ctx.Done():
	}
	res.NodeRSSEnd = rss(pid)
	for _, c := range clients {
		if c == nil {
			continue
		}
		select {
		case <-c.Done():
			res.Dropped++
		default:
		}
	}
	return res, nil
}
