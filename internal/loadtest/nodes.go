package loadtest

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/rs/zerolog"

	"github.com/medianest/hub/internal/natsembed"
)

// node is a hub process the load tool started.
type node struct {
	cmd *exec.Cmd
	url string
}

// startNodesWith runs n `serve` processes of this binary on natsURL and
// db, the first with the session worker, with extra environment for every
// node (it wins over the defaults), and waits until each is ready.
func startNodesWith(ctx context.Context, n int, natsURL, db, dir string, log zerolog.Logger, extra ...string) ([]*node, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	var nodes []*node
	for i := range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			stopNodes(nodes)
			return nil, err
		}
		addr := ln.Addr().String()
		ln.Close()
		components := "hub"
		if i == 0 {
			components = "hub,session-worker"
		}
		cmd := exec.CommandContext(ctx, exe, "serve")
		cmd.Env = append(os.Environ(),
			"MEDIANEST_JWT_SECRET="+benchSecret,
			"MEDIANEST_NATS_URL="+natsURL,
			"MEDIANEST_DATABASE_URL="+db,
			"MEDIANEST_DATA_DIR="+filepath.Join(dir, fmt.Sprint("node", i)),
			"MEDIANEST_LISTEN_ADDR="+addr,
			"MEDIANEST_SESSION_MODE=strict",
			"MEDIANEST_RATE_CONNECT_PER_MINUTE=1000000000",
			"MEDIANEST_RATE_EVENTS_PER_MINUTE=1000000000",
			"MEDIANEST_COMPONENTS="+components,
			fmt.Sprint("MEDIANEST_NODE_ID=bench-", i),
			"MEDIANEST_LOG_LEVEL=warn",
		)
		cmd.Env = append(cmd.Env, extra...)
		cmd.Stderr = os.Stderr
		cmd.SysProcAttr = childAttr()
		if err := cmd.Start(); err != nil {
			stopNodes(nodes)
			return nil, fmt.Errorf("start node %d: %w", i, err)
		}
		nd := &node{cmd: cmd, url: "http://" + addr}
		nodes = append(nodes, nd)
		if err := waitReady(ctx, nd.url); err != nil {
			stopNodes(nodes)
			return nil, fmt.Errorf("node %d: %w", i, err)
		}
		log.Info().Int("node", i).Str("url", nd.url).Int("pid", cmd.Process.Pid).Msg("hub node ready")
	}
	return nodes, nil
}

func waitReady(ctx context.Context, url string) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+"/readyz", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s not ready within 30s", url)
}

// stopNodes sends SIGTERM and waits for each process.
func stopNodes(nodes []*node) {
	for _, n := range nodes {
		_ = n.cmd.Process.Signal(syscall.SIGTERM)
	}
	for _, n := range nodes {
		done := make(chan struct{})
		go func() { _ = n.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = n.cmd.Process.Kill()
			<-done
		}
	}
}

// bench is a run's environment: a temporary directory, an embedded NATS
// server the tool and the nodes share, and hub processes.
type bench struct {
	dir   string
	ns    *server.Server
	nodes []*node
}

// newBench makes the directory and the NATS server, and starts nodes hub
// processes on db ("" = SQLite in the directory) with the extra
// environment. close undoes it all.
func newBench(ctx context.Context, nodes int, db string, log zerolog.Logger, extra ...string) (*bench, error) {
	dir, err := os.MkdirTemp("", "medianest-bench-")
	if err != nil {
		return nil, err
	}
	b := &bench{dir: dir}
	b.ns, err = natsembed.Start(natsembed.Options{StoreDir: filepath.Join(dir, "nats"), Listen: "127.0.0.1:-1"})
	if err != nil {
		b.close()
		return nil, err
	}
	if nodes > 0 {
		if db == "" {
			db = "sqlite:" + filepath.Join(dir, "bench.db")
		}
		if b.nodes, err = startNodesWith(ctx, nodes, b.ns.ClientURL(), db, dir, log, extra...); err != nil {
			b.close()
			return nil, err
		}
	}
	return b, nil
}

func (b *bench) close() {
	stopNodes(b.nodes)
	if b.ns != nil {
		b.ns.Shutdown()
	}
	os.RemoveAll(b.dir)
}
