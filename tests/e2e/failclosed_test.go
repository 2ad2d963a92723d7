package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/medianest/hub/internal/store"
)

// tcpProxy forwards to a real database and can cut it off, so a test can
// take the database away from a running hub and give it back.
type tcpProxy struct {
	ln     net.Listener
	target string
	down   atomic.Bool
	mu     sync.Mutex
	conns  []net.Conn
}

func newTCPProxy(t *testing.T, target string) *tcpProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{ln: ln, target: target}
	t.Cleanup(func() { ln.Close(); p.cut() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if p.down.Load() {
				c.Close()
				continue
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, up)
			p.mu.Unlock()
			go func() { _, _ = io.Copy(up, c); up.Close() }()
			go func() { _, _ = io.Copy(c, up); c.Close() }()
		}
	}()
	return p
}

func (p *tcpProxy) cut() {
	p.down.Store(true)
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

func (p *tcpProxy) restore() { p.down.Store(false) }

func TestStrictModeFailsClosed(t *testing.T) {
	dsn := os.Getenv("MEDIANEST_TEST_POSTGRES_DSN")
	if dsn == "" {
		t.Skip("MEDIANEST_TEST_POSTGRES_DSN is not set; the fail-closed test needs PostgreSQL behind a proxy it can cut")
	}
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	proxy := newTCPProxy(t, u.Host)
	u.Host = proxy.ln.Addr().String()

	c := newClusterOn(t, 1, u.String(), nil)
	h := c.nodes[0]
	d := newDriver(t)
	live := c.login("u1", fmt.Sprint("fc-live-", time.Now().UnixNano()))
	d.MustConnect("live", h.URL, "/media", ConnOpts{Token: live})

	// A session only the database knows (as the token command stores it).
	sid := fmt.Sprint("fc-db-", time.Now().UnixNano())
	if err := h.App.Store().CreateSession(t.Context(), &store.Session{ID: sid, UserID: "u2", ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	dbOnly := mint(t, "u2", "user", withSession(sid))

	proxy.cut()
	expectRefused(t, d, "while-down", h.URL, "/media", dbOnly, "session_unavailable")
	if ack := d.EmitAck("live", "ping"); ack.Err != nil {
		t.Fatalf("existing socket dropped while the database is down: %s", *ack.Err)
	}
	readyz := func() int {
		resp, err := http.Get(h.URL + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := readyz(); code != http.StatusServiceUnavailable {
		t.Fatalf("readyz while the database is down = %d", code)
	}

	proxy.restore()
	waitFor(t, 10*time.Second, func() error {
		if code := readyz(); code != http.StatusOK {
			return fmt.Errorf("readyz = %d", code)
		}
		return nil
	})
	d.MustConnect("after", h.URL, "/media", ConnOpts{Token: dbOnly})
}
