// Package e2e runs MediaNest Hub end to end: real hub processes' code on
// httptest servers, an embedded NATS server with JetStream, SQLite, and the
// real socket.io-client from npm driven through driver.mjs.
package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/medianest/hub/hub"
	"github.com/medianest/hub/hub/auth"
	"github.com/medianest/hub/internal/app"
	"github.com/medianest/hub/internal/config"
	"github.com/medianest/hub/internal/testkit"
)

const secret = "e2e-secret-e2e-secret-e2e-secret-e2e"

// startNATS runs an embedded NATS server with JetStream on a random port.
func startNATS(t *testing.T) *server.Server {
	t.Helper()
	return testkit.Server(t)
}

// hubNode is one hub under test.
type hubNode struct {
	App *app.App
	URL string // http://127.0.0.1:port
}

// startHub starts a hub node on the given NATS (nil = the node's own
// embedded server) with test-friendly defaults that mutate may change.
func startHub(t *testing.T, ns *server.Server, mutate func(*config.Config)) *hubNode {
	t.Helper()
	cfg := config.Default()
	cfg.JWTSecret = secret
	cfg.DataDir = t.TempDir()
	cfg.RateConnectPerMin = 10000
	cfg.RateEventsPerMin = 10000
	cfg.ShutdownTimeout = 3 * time.Second
	cfg.ListenAddr = "127.0.0.1:0"
	// Most tests exercise other features with tokens that have no session;
	// the session tests switch strict mode on.
	cfg.SessionMode = config.SessionStateless
	// Every test client comes from 127.0.0.1: blocking it would end the
	// test. The security tests switch blocks on behind a trusted proxy.
	cfg.SecurityBlockIPs = false
	if ns != nil {
		cfg.NATSURL = ns.ClientURL()
	}
	if mutate != nil {
		mutate(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("test config: %v", err)
	}
	level := zerolog.WarnLevel
	if os.Getenv("E2E_DEBUG") != "" {
		level = zerolog.DebugLevel
	}
	feed := &hub.LogFeed{}
	log := zerolog.New(io.MultiWriter(zerolog.NewTestWriter(t), feed)).Level(level).With().Timestamp().Logger()
	a, err := app.New(context.Background(), cfg, app.Options{Logger: log, LogFeed: feed})
	if err != nil {
		t.Fatalf("start hub: %v", err)
	}
	// Served the way `serve` serves: WebSocket upgrades are taken off the
	// listener before net/http.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- a.Serve(ctx, ln) }()
	t.Cleanup(func() {
		stop()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
		a.Close()
	})
	return &hubNode{App: a, URL: "http://" + ln.Addr().String()}
}

type tokenOpt func(*auth.MintOptions)

func withSession(s string) tokenOpt { return func(o *auth.MintOptions) { o.SessionID = s } }
func withTTL(d time.Duration) tokenOpt {
	return func(o *auth.MintOptions) { o.TTL = d }
}
func withJTI(j string) tokenOpt    { return func(o *auth.MintOptions) { o.JTI = j } }
func withIssuer(s string) tokenOpt { return func(o *auth.MintOptions) { o.Issuer = s } }

// mint signs a token for user with role.
func mint(t *testing.T, user, role string, opts ...tokenOpt) string {
	t.Helper()
	o := auth.MintOptions{UserID: user, Roles: []string{role}, Email: user + "@example.test", Name: "User " + user,
		Issuer: "medianest", Audience: "medianest-users"}
	for _, f := range opts {
		f(&o)
	}
	tok, err := auth.Mint([]byte(secret), o)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// natsConn connects a backend to ns.
func natsConn(t *testing.T, ns *server.Server) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// Msg is one report of driver.mjs.
type Msg struct {
	ID      string            `json:"id"`
	Type    string            `json:"type"`
	SID     string            `json:"sid"`
	Event   string            `json:"event"`
	Args    []json.RawMessage `json:"args"`
	Message string            `json:"message"`
	Data    json.RawMessage   `json:"data"`
	Reason  string            `json:"reason"`
	Seq     int               `json:"seq"`
	Err     *string           `json:"err"`
	Code    int               `json:"code"`

	used bool
}

// Arg decodes argument i into v.
func (m Msg) Arg(t *testing.T, i int, v any) {
	t.Helper()
	if i >= len(m.Args) {
		t.Fatalf("%s %s has %d args, want index %d", m.Type, m.Event, len(m.Args), i)
	}
	if err := json.Unmarshal(m.Args[i], v); err != nil {
		t.Fatalf("decode arg %d of %s: %v (%s)", i, m.Event, err, m.Args[i])
	}
}

// Driver runs driver.mjs with the real socket.io-client.
type Driver struct {
	t     *testing.T
	stdin io.WriteCloser
	mu    sync.Mutex
	cond  *sync.Cond
	msgs  []*Msg
	seq   int
	done  bool
}

func nodeAvailable(t *testing.T) string {
	t.Helper()
	dir, _ := os.Getwd()
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "socket.io-client")); err != nil {
		msg := "tests/e2e/node_modules is missing: run `npm ci --prefix tests/e2e` (make test does)"
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("node is not installed")
		}
		t.Skip("node is not installed; skipping socket.io-client tests")
	}
	return node
}

// newDriver starts a driver process for the test.
func newDriver(t *testing.T) *Driver {
	t.Helper()
	node := nodeAvailable(t)
	cmd := exec.Command(node, "driver.mjs")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d := &Driver{t: t, stdin: stdin}
	d.cond = sync.NewCond(&d.mu)
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 16<<20)
		for sc.Scan() {
			var m Msg
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				continue
			}
			d.mu.Lock()
			d.msgs = append(d.msgs, &m)
			d.cond.Broadcast()
			d.mu.Unlock()
		}
		d.mu.Lock()
		d.done = true
		d.cond.Broadcast()
		d.mu.Unlock()
	}()
	t.Cleanup(func() {
		d.send(map[string]any{"op": "exit"})
		_ = stdin.Close()
		waited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(waited) }()
		select {
		case <-waited:
		case <-time.After(3 * time.Second):
			_ = cmd.Process.Kill()
			<-waited
		}
	})
	d.Expect("", "ready", "")
	return d
}

func (d *Driver) send(cmd map[string]any) {
	b, _ := json.Marshal(cmd)
	_, _ = d.stdin.Write(append(b, '\n'))
}

// ConnOpts are the client options of a connect.
type ConnOpts struct {
	Token   string            // sent as the CONNECT auth payload {token}
	Auth    map[string]any    // the whole auth payload (wins over Token)
	Headers map[string]string // extra headers of the upgrade request
	Query   map[string]string
	Manager string // share one connection between sockets with the same key
}

// Connect opens socket id on url's namespace ns without waiting.
func (d *Driver) Connect(id, url, ns string, o ConnOpts) {
	cmd := map[string]any{"op": "connect", "id": id, "url": url, "ns": ns}
	if o.Auth != nil {
		cmd["auth"] = o.Auth
	} else if o.Token != "" {
		cmd["auth"] = map[string]string{"token": o.Token}
	}
	if o.Headers != nil {
		cmd["headers"] = o.Headers
	}
	if o.Query != nil {
		cmd["query"] = o.Query
	}
	if o.Manager != "" {
		cmd["manager"] = o.Manager
	}
	d.send(cmd)
}

// MustConnect connects and waits for the connect report.
func (d *Driver) MustConnect(id, url, ns string, o ConnOpts) Msg {
	d.t.Helper()
	d.Connect(id, url, ns, o)
	m := d.ExpectAny(id, "connect", "connect_error")
	if m.Type != "connect" {
		d.t.Fatalf("%s: connect to %s refused: %s %s", id, ns, m.Message, m.Data)
	}
	return m
}

// Emit sends an event without an ack.
func (d *Driver) Emit(id, event string, args ...any) {
	if args == nil {
		args = []any{}
	}
	d.send(map[string]any{"op": "emit", "id": id, "event": event, "args": args})
}

// EmitAck sends an event with an ack and waits for it.
func (d *Driver) EmitAck(id, event string, args ...any) Msg {
	d.t.Helper()
	d.mu.Lock()
	d.seq++
	seq := d.seq
	d.mu.Unlock()
	if args == nil {
		args = []any{}
	}
	d.send(map[string]any{"op": "emit", "id": id, "event": event, "args": args, "ack": true, "seq": seq})
	return d.wait(10*time.Second, fmt.Sprintf("ack %d of %s", seq, id), func(m *Msg) bool {
		return m.ID == id && m.Type == "ack" && m.Seq == seq
	})
}

// Disconnect closes socket id from the client side.
func (d *Driver) Disconnect(id string) { d.send(map[string]any{"op": "disconnect", "id": id}) }

// Raw opens a plain WebSocket to url.
func (d *Driver) Raw(id, url string, headers map[string]string) {
	d.send(map[string]any{"op": "raw", "id": id, "url": url, "headers": headers})
}

// RawSend sends a text frame on a raw WebSocket.
func (d *Driver) RawSend(id, data string) {
	d.send(map[string]any{"op": "raw_send", "id": id, "data": data})
}

// RawSendBinary sends a binary frame (base64 given) on a raw WebSocket.
func (d *Driver) RawSendBinary(id, b64 string) {
	d.send(map[string]any{"op": "raw_send", "id": id, "data": b64, "binary": true})
}

// Expect waits for the next unconsumed report of id with the given type
// (and event, for type "event").
func (d *Driver) Expect(id, typ, event string) Msg {
	d.t.Helper()
	return d.wait(10*time.Second, fmt.Sprintf("%s %s %s", id, typ, event), func(m *Msg) bool {
		return m.ID == id && m.Type == typ && (event == "" || m.Event == event)
	})
}

// ExpectAny waits for a report of id of any of the types.
func (d *Driver) ExpectAny(id string, types ...string) Msg {
	d.t.Helper()
	return d.wait(10*time.Second, fmt.Sprintf("%s %v", id, types), func(m *Msg) bool {
		if m.ID != id {
			return false
		}
		for _, typ := range types {
			if m.Type == typ {
				return true
			}
		}
		return false
	})
}

// ExpectNone asserts that no matching report arrives within d.
func (d *Driver) ExpectNone(id, typ, event string, within time.Duration) {
	d.t.Helper()
	deadline := time.Now().Add(within)
	d.mu.Lock()
	defer d.mu.Unlock()
	for {
		for _, m := range d.msgs {
			if !m.used && m.ID == id && m.Type == typ && (event == "" || m.Event == event) {
				d.t.Fatalf("%s: unexpected %s %s: %s", id, typ, event, m.Args)
			}
		}
		if time.Now().After(deadline) {
			return
		}
		d.waitCond(deadline)
	}
}

func (d *Driver) waitCond(deadline time.Time) {
	timer := time.AfterFunc(time.Until(deadline), func() {
		d.mu.Lock()
		d.cond.Broadcast()
		d.mu.Unlock()
	})
	d.cond.Wait()
	timer.Stop()
}

func (d *Driver) wait(timeout time.Duration, what string, pred func(*Msg) bool) Msg {
	d.t.Helper()
	deadline := time.Now().Add(timeout)
	d.mu.Lock()
	defer d.mu.Unlock()
	for {
		for _, m := range d.msgs {
			if !m.used && pred(m) {
				m.used = true
				return *m
			}
		}
		if d.done || time.Now().After(deadline) {
			var seen []string
			for _, m := range d.msgs {
				if !m.used {
					seen = append(seen, fmt.Sprintf("%s/%s/%s/%s", m.ID, m.Type, m.Event, m.Message))
				}
			}
			d.t.Fatalf("timed out waiting for %s; unconsumed: %s", what, strings.Join(seen, ", "))
		}
		d.waitCond(deadline)
	}
}

// waitFor polls fn until it returns nil or the timeout passes.
func waitFor(t *testing.T, timeout time.Duration, fn func() error) {
	t.Helper()
	testkit.WaitFor(t, timeout, fn)
}
