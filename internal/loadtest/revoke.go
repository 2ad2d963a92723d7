package loadtest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/medianest/hub/events"
	"github.com/medianest/hub/hub/auth"
)

// RevokeOptions configure the revocation benchmark.
type RevokeOptions struct {
	Nodes       int           // hub nodes, default 3
	Sockets     int           // connected sockets, default 10,000
	Revocations int           // sessions revoked, default 200
	Interval    time.Duration // pause between revocations, default 20ms
	DatabaseURL string        // default: SQLite in a temporary directory
	Concurrency int           // connects in flight, default 100
}

// RevokeResult is the benchmark's report, printed as one JSON line.
type RevokeResult struct {
	Scenario     string      `json:"scenario"`
	Nodes        int         `json:"nodes"`
	Sockets      int         `json:"sockets"`
	Database     string      `json:"database"`
	Latency      Percentiles `json:"revoke_to_disconnect"`
	Missed       int         `json:"missed"`
	Collateral   int         `json:"collateral_disconnects"`
	ConnectSecs  float64     `json:"connect_seconds"`
	CPUSeconds   float64     `json:"loadgen_cpu_seconds"`
	RSSBytes     int64       `json:"loadgen_rss_bytes"`
	NodeRSSBytes int64       `json:"nodes_rss_bytes"`
}

const benchSecret = "loadtest-secret-loadtest-secret-loadtest"

// RunRevoke starts an embedded NATS server in this process and Nodes hub
// processes (this binary's serve command) on it and one database, connects Sockets strict-mode sockets spread over
// them, revokes random sessions through the admin API of a random node, and
// measures from the API call to the client reading the disconnect.
func RunRevoke(ctx context.Context, o RevokeOptions, log zerolog.Logger) (RevokeResult, error) {
	if o.Nodes <= 0 {
		o.Nodes = 3
	}
	if o.Sockets <= 0 {
		o.Sockets = 10_000
	}
	if o.Revocations <= 0 {
		o.Revocations = 200
	}
	if o.Revocations > o.Sockets {
		o.Revocations = o.Sockets
	}
	if o.Interval <= 0 {
		o.Interval = 20 * time.Millisecond
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 100
	}
	res := RevokeResult{Scenario: "revoke", Nodes: o.Nodes, Sockets: o.Sockets, Database: "sqlite"}
	if o.DatabaseURL != "" {
		res.Database = "postgres"
	}
	b, err := newBench(ctx, o.Nodes, o.DatabaseURL, log)
	if err != nil {
		return res, err
	}
	defer b.close()
	nodes, ns := b.nodes, b.ns
	poller, err := NewPoller(1)
	if err != nil {
		return res, err
	}
	defer poller.Close()
	urls := make([]string, len(nodes))
	for i, n := range nodes {
		urls[i] = n.url
	}

	// Sessions, announced the way a backend does.
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		return res, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return res, err
	}
	tokens := make([]string, o.Sockets)
	for i := range tokens {
		sid := fmt.Sprint("bench-session-", i)
		tok, err := auth.Mint([]byte(benchSecret), auth.MintOptions{
			UserID: fmt.Sprint("user-", i), Roles: []string{"user"}, SessionID: sid,
			Issuer: "medianest", Audience: "medianest-users", TTL: 2 * time.Hour,
		})
		if err != nil {
			return res, err
		}
		tokens[i] = tok
		sum := sha256.Sum256([]byte(tok))
		ev, _ := events.New("loadtest", events.DomainSession, events.SessionCreated, "", events.SessionCreatedData{
			SessionID: sid, UserID: fmt.Sprint("user-", i), ExpiresAt: time.Now().Add(2 * time.Hour), TokenSHA256: hex.EncodeToString(sum[:]),
		})
		raw, _ := json.Marshal(ev)
		if _, err := js.PublishAsync("medianest.events.session.created", raw); err != nil {
			return res, err
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		return res, fmt.Errorf("session events not stored within a minute")
	}

	// Connect every socket, spread over the nodes.
	start := time.Now()
	clients := make([]*Client, o.Sockets)
	sem := make(chan struct{}, o.Concurrency)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for i := range clients {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			c, err := DialFrom(ctx, urls[i%len(urls)], "/media", tokens[i], SourceFor(i))
			if err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = fmt.Errorf("socket %d: %w", i, err)
				}
				mu.Unlock()
				return
			}
			if err := poller.Add(c); err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = fmt.Errorf("socket %d: %w", i, err)
				}
				mu.Unlock()
				return
			}
			clients[i] = c
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return res, firstErr
	}
	res.ConnectSecs = time.Since(start).Seconds()
	defer func() {
		for _, c := range clients {
			if c != nil {
				c.Close()
			}
		}
	}()
	log.Info().Int("sockets", o.Sockets).Float64("seconds", res.ConnectSecs).Msg("connected")

	admin, _ := auth.Mint([]byte(benchSecret), auth.MintOptions{UserID: "bench-admin", Roles: []string{"service"}, Issuer: "medianest", Audience: "medianest-users"})
	victims := rand.Perm(o.Sockets)[:o.Revocations]
	isVictim := make(map[int]bool, len(victims))
	var lat []time.Duration
	cpu0 := cpuTime()
	for _, v := range victims {
		isVictim[v] = true
		body, _ := json.Marshal(map[string]string{"session_id": fmt.Sprint("bench-session-", v), "reason": "benchmark"})
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, urls[rand.IntN(len(urls))]+"/api/v1/revocations", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+admin)
		t0 := time.Now()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return res, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			return res, fmt.Errorf("revocation API answered %d", resp.StatusCode)
		}
		c := clients[v]
		select {
		case <-c.KickedC():
		case <-c.Done():
		case <-time.After(5 * time.Second):
		}
		if k := c.Kicked.Load(); k > 0 {
			lat = append(lat, time.Unix(0, k).Sub(t0))
		} else {
			res.Missed++
		}
		time.Sleep(o.Interval)
	}
	res.CPUSeconds = (cpuTime() - cpu0).Seconds()
	for _, n := range nodes {
		res.NodeRSSBytes += rss(n.cmd.Process.Pid)
	}
	for i, c := range clients {
		if !isVictim[i] && c.Kicked.Load() > 0 {
			res.Collateral++
		}
	}
	res.Latency = Summarise(lat)
	res.RSSBytes = rss(os.Getpid())
	return res, nil
}
