package loadtest

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/medianest/hub/hub/auth"
)

// ConnOptions configure the connect and idle scenarios.
type ConnOptions struct {
	Connections int           // default 5,000 (connect) or 10,000 (idle)
	Concurrency int           // connects in flight, default 100
	Hold        time.Duration // idle: how long to hold them (pings run), default 30s
	// Nodes is the number of hub processes; connections go round-robin.
	Nodes int
	// Processes is the number of load-tool processes holding the
	// connections (this one included when 1). One process can hold only
	// as many as its file-descriptor limit allows.
	Processes int
	// Sample is the interval between samples of the nodes' RSS and
	// goroutines while the connections are held; default Hold/10.
	Sample time.Duration
}

// ConnResult is a connect or idle run's report.
type ConnResult struct {
	Scenario       string   `json:"scenario"`
	Connections    int      `json:"connections"`
	Nodes          int      `json:"nodes"`
	Processes      int      `json:"loadgen_processes"`
	Seconds        float64  `json:"seconds"`
	PerSecond      float64  `json:"connections_per_second"`
	Failed         int64    `json:"failed"`
	NodeRSSBefore  int64    `json:"node_rss_before_bytes,omitempty"`
	NodeRSSAfter   int64    `json:"node_rss_after_bytes,omitempty"`
	NodeRSSEnd     int64    `json:"node_rss_end_bytes,omitempty"`
	RSSPerConnKiB  float64  `json:"node_rss_per_connection_kib,omitempty"`
	LoadgenCPUSecs float64  `json:"loadgen_cpu_seconds"`
	NodeCPUSecs    float64  `json:"node_cpu_seconds"`
	Dropped        int64    `json:"dropped_while_held,omitempty"`
	Samples        []Sample `json:"samples,omitempty"`
}

// Sample is the hub nodes' state at one moment of an idle hold (sums
// over the nodes).
type Sample struct {
	At         float64 `json:"t_seconds"`
	RSS        int64   `json:"rss_bytes"`
	Goroutines int64   `json:"goroutines"`
	Sockets    int64   `json:"sockets"`
}

// RunConnect opens authenticated /media sockets on hub processes (JWT
// verified, stateless sessions) as fast as the concurrency allows; with
// idle it then holds them, sampling the hubs, and reports their RSS per
// connection.
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
	o.Nodes = max(o.Nodes, 1)
	o.Processes = max(o.Processes, 1)
	if o.Sample <= 0 {
		o.Sample = max(o.Hold/10, time.Second)
	}
	res := ConnResult{Scenario: "connect", Connections: o.Connections, Nodes: o.Nodes, Processes: o.Processes}
	if idle {
		res.Scenario = "idle"
	}
	b, err := newBench(ctx, o.Nodes, "", log, "MEDIANEST_SESSION_MODE=stateless", "MEDIANEST_COMPONENTS=hub")
	if err != nil {
		return res, err
	}
	defer b.close()
	urls := make([]string, len(b.nodes))
	pids := make([]int, len(b.nodes))
	for i, n := range b.nodes {
		urls[i], pids[i] = n.url, n.cmd.Process.Pid
	}
	nodeRSS := func() (t int64) {
		for _, p := range pids {
			t += rss(p)
		}
		return t
	}
	nodeCPU := func() (t time.Duration) {
		for _, p := range pids {
			t += processCPU(p)
		}
		return t
	}
	time.Sleep(500 * time.Millisecond)
	res.NodeRSSBefore = nodeRSS()

	var tokens []string
	if o.Processes == 1 {
		tokens = mintTokens(0, o.Connections)
	}
	cpu0, node0 := cpuTime(), nodeCPU()
	start := time.Now()
	var (
		holders []*holder
		local   *held
	)
	if o.Processes == 1 {
		if local, err = hold(ctx, urls, 0, tokens, o.Concurrency, log); err != nil {
			return res, err
		}
		res.Failed = local.failed
	} else {
		holders, err = startHolders(ctx, urls, o, log)
		defer func() {
			for _, h := range holders {
				h.stop()
			}
		}()
		if err != nil {
			return res, err
		}
		for _, h := range holders {
			res.Failed += h.failed
		}
	}
	res.Seconds = time.Since(start).Seconds()
	res.PerSecond = float64(o.Connections-int(res.Failed)) / res.Seconds
	res.LoadgenCPUSecs = (cpuTime() - cpu0).Seconds()
	for _, h := range holders {
		res.LoadgenCPUSecs += h.cpu().Seconds()
	}
	res.NodeCPUSecs = (nodeCPU() - node0).Seconds()
	if local != nil {
		defer local.close()
	}
	if !idle {
		return res, nil
	}
	runtime.GC()
	time.Sleep(2 * time.Second)
	res.NodeRSSAfter = nodeRSS()
	res.RSSPerConnKiB = float64(res.NodeRSSAfter-res.NodeRSSBefore) / 1024 / float64(o.Connections-int(res.Failed))

	held := time.Now()
	sample := func() {
		s := Sample{At: time.Since(held).Seconds(), RSS: nodeRSS()}
		for _, u := range urls {
			m := scrape(ctx, u, "go_goroutines", "medianest_connections")
			s.Goroutines += int64(m["go_goroutines"])
			s.Sockets += int64(m["medianest_connections"])
		}
		res.Samples = append(res.Samples, s)
		log.Info().Float64("t", s.At).Int64("rss", s.RSS).Int64("goroutines", s.Goroutines).Int64("sockets", s.Sockets).Msg("sample")
	}
	sample()
	tick := time.NewTicker(o.Sample)
	defer tick.Stop()
	end := time.After(o.Hold)
wait:
	for {
		select {
		case <-tick.C:
			sample()
		case <-end:
			break wait
		case <-ctx.Done():
			break wait
		}
	}
	sample()
	res.NodeRSSEnd = nodeRSS()
	if local != nil {
		res.Dropped = local.dropped()
	}
	for _, h := range holders {
		d, err := h.finish()
		if err != nil {
			return res, err
		}
		res.Dropped += d
	}
	return res, nil
}

// held is a set of open client connections.
type held struct {
	poller  *Poller
	clients []*Client
	failed  int64
}

// hold opens count connections, the i-th from SourceFor(from+i) to
// urls[(from+i) % len(urls)], all read by one poller that answers pings.
func hold(ctx context.Context, urls []string, from int, tokens []string, concurrency int, log zerolog.Logger) (*held, error) {
	p, err := NewPoller(1)
	if err != nil {
		return nil, err
	}
	h := &held{poller: p, clients: make([]*Client, len(tokens))}
	sem := make(chan struct{}, concurrency)
	var wg sync.WaitGroup
	var failed atomic.Int64
	for i := range h.clients {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			n := from + i
			c, err := DialFrom(ctx, urls[n%len(urls)], "/media", tokens[i], SourceFor(n))
			if err != nil {
				if failed.Add(1) == 1 {
					log.Warn().Err(err).Msg("connect failed")
				}
				return
			}
			if err := p.Add(c); err != nil {
				if failed.Add(1) == 1 {
					log.Warn().Err(err).Msg("poll failed")
				}
				return
			}
			h.clients[i] = c
		}()
	}
	wg.Wait()
	h.failed = failed.Load()
	return h, nil
}

// mintTokens mints the tokens of connections from .. from+count-1, one
// user each. A client comes with its token: minting is not part of
// connecting, so it happens before a measurement starts.
func mintTokens(from, count int) []string {
	tokens := make([]string, count)
	for i := range tokens {
		tokens[i], _ = auth.Mint([]byte(benchSecret), auth.MintOptions{UserID: fmt.Sprint("u", from+i), Roles: []string{"user"}, Issuer: "medianest", Audience: "medianest-users", TTL: 2 * time.Hour})
	}
	return tokens
}

// dropped counts the connections that ended while held.
func (h *held) dropped() (n int64) {
	for _, c := range h.clients {
		if c == nil {
			continue
		}
		select {
		case <-c.Done():
			n++
		default:
		}
	}
	return n
}

func (h *held) close() {
	for _, c := range h.clients {
		if c != nil {
			c.Close()
		}
	}
	h.poller.Close()
}

// holder is a child load-tool process (`bench hold`) holding a share of
// the connections.
type holder struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	out    *bufio.Scanner
	failed int64
}

// HoldReport is what a `bench hold` process prints: once when its
// connections are open, and once when told to stop.
type HoldReport struct {
	Opened  int   `json:"opened"`
	Failed  int64 `json:"failed"`
	Dropped int64 `json:"dropped"`
	Done    bool  `json:"done"`
}

func startHolders(ctx context.Context, urls []string, o ConnOptions, log zerolog.Logger) ([]*holder, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	per := (o.Connections + o.Processes - 1) / o.Processes
	var hs []*holder
	for from := 0; from < o.Connections; from += per {
		count := min(per, o.Connections-from)
		cmd := exec.CommandContext(ctx, exe, "bench", "hold", "--urls", strings.Join(urls, ","),
			"--from", strconv.Itoa(from), "--count", strconv.Itoa(count), "--concurrency", strconv.Itoa(max(o.Concurrency/o.Processes, 1)))
		cmd.Stderr = os.Stderr
		cmd.SysProcAttr = childAttr()
		stdin, err := cmd.StdinPipe()
		if err != nil {
			return hs, err
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			return hs, err
		}
		if err := cmd.Start(); err != nil {
			return hs, fmt.Errorf("start holder: %w", err)
		}
		hs = append(hs, &holder{cmd: cmd, stdin: stdin, out: bufio.NewScanner(stdout)})
	}
	// They connect in parallel; wait for each to report.
	for _, h := range hs {
		r, err := h.report()
		if err != nil {
			return hs, err
		}
		h.failed = r.Failed
		log.Info().Int("pid", h.cmd.Process.Pid).Int("opened", r.Opened).Int64("failed", r.Failed).Msg("holder ready")
	}
	return hs, nil
}

func (h *holder) report() (HoldReport, error) {
	var r HoldReport
	if !h.out.Scan() {
		return r, fmt.Errorf("holder %d ended without a report: %v", h.cmd.Process.Pid, h.out.Err())
	}
	if err := json.Unmarshal(h.out.Bytes(), &r); err != nil {
		return r, fmt.Errorf("holder report %q: %w", h.out.Text(), err)
	}
	return r, nil
}

// cpu is the holder's CPU time so far.
func (h *holder) cpu() time.Duration { return processCPU(h.cmd.Process.Pid) }

// finish tells the holder to stop and returns how many of its
// connections ended while held.
func (h *holder) finish() (int64, error) {
	_ = h.stdin.Close()
	r, err := h.report()
	if err != nil {
		return 0, err
	}
	_ = h.cmd.Wait()
	return r.Dropped, nil
}

func (h *holder) stop() {
	_ = h.stdin.Close()
	_ = h.cmd.Process.Signal(syscall.SIGTERM)
	_ = h.cmd.Wait()
}

// RunHold is the `bench hold` child: it opens its share of connections,
// reports, holds them until stdin closes, and reports how many dropped.
func RunHold(ctx context.Context, urls []string, from, count, concurrency int, stdin io.Reader, stdout io.Writer, log zerolog.Logger) error {
	h, err := hold(ctx, urls, from, mintTokens(from, count), concurrency, log)
	if err != nil {
		return err
	}
	defer h.close()
	enc := json.NewEncoder(stdout)
	if err := enc.Encode(HoldReport{Opened: count - int(h.failed), Failed: h.failed}); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() { _, _ = io.Copy(io.Discard, stdin); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
	return enc.Encode(HoldReport{Opened: count - int(h.failed), Failed: h.failed, Dropped: h.dropped(), Done: true})
}

// scrape reads gauges from a node's /metrics (summing a metric's series).
func scrape(ctx context.Context, base string, names ...string) map[string]float64 {
	out := map[string]float64{}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return out
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		for _, n := range names {
			if strings.HasPrefix(line, n+" ") || strings.HasPrefix(line, n+"{") {
				f := strings.Fields(line)
				if v, err := strconv.ParseFloat(f[len(f)-1], 64); err == nil {
					out[n] += v
				}
			}
		}
	}
	return out
}
