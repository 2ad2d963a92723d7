package app

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// upgradeServer serves a handler chain through an upgradeListener: under
// /socket.io/ a request asking for an upgrade is hijacked, answered 101
// and echoes the bytes that followed its head; ?refuse=1 is refused with
// 403; a request without Upgrade gets 200. Every response says which server read the request (net/http puts
// itself in the request's context; the listener does not).
func upgradeServer(t *testing.T) string {
	t.Helper()
	return startUpgradeServer(t).addr
}

type upgradeTestServer struct {
	addr     string
	handled  *atomic.Int64 // requests the handler chain saw
	shutdown func()        // as App.Serve shuts down: the server, then the listener's stragglers
}

func startUpgradeServer(t *testing.T) *upgradeTestServer {
	t.Helper()
	handled := new(atomic.Int64)
	inner := http.NewServeMux()
	mux := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		handled.Add(1)
		inner.ServeHTTP(w, r)
	})
	via := func(r *http.Request) string {
		if r.Context().Value(http.ServerContextKey) != nil {
			return "net/http"
		}
		return "listener"
	}
	inner.HandleFunc("/socket.io/", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") == "" {
			w.Header().Set("X-Via", via(r))
			fmt.Fprint(w, "not an upgrade")
			return
		}
		if r.URL.Query().Get("refuse") == "1" {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("X-Via", via(r))
			w.WriteHeader(http.StatusForbidden)
			fmt.Fprint(w, `{"code":4}`)
			return
		}
		nc, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("hijack: %v", err)
			return
		}
		_, raw := nc.(*net.TCPConn)
		fmt.Fprintf(nc, "HTTP/1.1 101 Switching Protocols\r\nX-Via: %s\r\nX-Raw: %v\r\nX-Remote: %v\r\n\r\n", via(r), raw, r.RemoteAddr != "")
		go func() {
			defer nc.Close()
			// Early bytes first (in brw), then the connection.
			_, _ = io.Copy(nc, io.MultiReader(io.LimitReader(brw.Reader, int64(brw.Reader.Buffered())), nc))
		}()
	})
	inner.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Via", via(r))
		fmt.Fprint(w, "ok")
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	ul := newUpgradeListener(ln, "/socket.io/", mux, 5*time.Second, zerolog.Nop())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ul) }()
	var once sync.Once
	shutdown := func() {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = srv.Shutdown(ctx)
			if err := ul.Wait(ctx); err != nil {
				t.Errorf("listener: %v", err)
			}
			if err := <-done; !errors.Is(err, http.ErrServerClosed) {
				t.Errorf("Serve: %v", err)
			}
		})
	}
	t.Cleanup(shutdown)
	return &upgradeTestServer{addr: ln.Addr().String(), handled: handled, shutdown: shutdown}
}

func upgradeHead(path string, extra ...string) string {
	h := "GET " + path + " HTTP/1.1\r\nHost: hub.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
	for _, e := range extra {
		h += e + "\r\n"
	}
	return h + "\r\n"
}

func TestUpgradeListener(t *testing.T) {
	addr := upgradeServer(t)
	tests := []struct {
		name string
		send []string // written one after another, a moment apart
		// want is the status line and the headers the response must have;
		// echo, when set, must come back after a 101.
		want []string
		echo string
	}{
		{"upgrade served by the listener", []string{upgradeHead("/socket.io/?EIO=4") + "early"},
			[]string{"HTTP/1.1 101", "X-Via: listener", "X-Raw: true", "X-Remote: true"}, "early"},
		{"head in pieces", []string{"GET /socket.io/?EIO=4 HTTP/1.1\r\nHost: hub.test\r\nUpg", "rade: websocket\r\nConnection: Upgrade\r\n\r", "\n"},
			[]string{"HTTP/1.1 101", "X-Via: listener"}, ""},
		{"refusal written whole", []string{upgradeHead("/socket.io/?refuse=1")},
			[]string{"HTTP/1.1 403", "X-Via: listener", "Content-Type: application/json", "Content-Length: 10", "Connection: close"}, ""},
		{"head over the buffer goes to net/http", []string{upgradeHead("/socket.io/", "Cookie: c="+strings.Repeat("x", 5000)) + "early"},
			[]string{"HTTP/1.1 101", "X-Via: net/http", "X-Raw: false"}, "early"},
		{"upgrade elsewhere goes to net/http", []string{upgradeHead("/other")},
			[]string{"HTTP/1.1 200", "X-Via: net/http"}, ""},
		{"plain request goes to net/http", []string{"GET /socket.io/?EIO=4 HTTP/1.1\r\nHost: hub.test\r\n\r\n"},
			[]string{"HTTP/1.1 200", "X-Via: net/http"}, ""},
		{"malformed header line", []string{upgradeHead("/socket.io/", "no colon here")},
			[]string{"HTTP/1.1 400", "Connection: close"}, ""},
		{"no Host", []string{"GET /socket.io/ HTTP/1.1\r\nUpgrade: websocket\r\n\r\n"},
			[]string{"HTTP/1.1 400"}, ""},
		{"two Hosts", []string{upgradeHead("/socket.io/", "Host: other.test")},
			[]string{"HTTP/1.1 400"}, ""},
		{"control character in a value", []string{upgradeHead("/socket.io/", "Origin: a\x01b")},
			[]string{"HTTP/1.1 400"}, ""},
		{"malformed Host", []string{"GET /socket.io/ HTTP/1.1\r\nHost: a b\r\nUpgrade: websocket\r\n\r\n"},
			[]string{"HTTP/1.1 400"}, ""},
		{"bare LF line endings, plain", []string{"GET /healthz HTTP/1.1\nHost: hub.test\n\n"},
			[]string{"HTTP/1.1 200", "X-Via: net/http"}, ""},
		{"bare LF line endings, HTTP/1.0", []string{"GET /healthz HTTP/1.0\n\n"},
			[]string{"HTTP/1.0 200", "X-Via: net/http"}, ""},
		{"bare LF line endings, upgrade", []string{"GET /socket.io/ HTTP/1.1\nHost: hub.test\nUpgrade: websocket\n\n"},
			[]string{"HTTP/1.1 101", "X-Via: net/http"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nc, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
			for i, s := range tt.send {
				if i > 0 {
					time.Sleep(20 * time.Millisecond)
				}
				if _, err := io.WriteString(nc, s); err != nil {
					t.Fatal(err)
				}
			}
			br := bufio.NewReader(nc)
			var head []string
			for {
				line, err := br.ReadString('\n')
				if err != nil {
					t.Fatalf("response head %q: %v", head, err)
				}
				line = strings.TrimRight(line, "\r\n")
				if line == "" {
					break
				}
				head = append(head, line)
			}
			for _, w := range tt.want {
				found := false
				for _, h := range head {
					found = found || strings.HasPrefix(h, w)
				}
				if !found {
					t.Fatalf("response %q lacks %q", head, w)
				}
			}
			if tt.echo != "" {
				got := make([]byte, len(tt.echo))
				if _, err := io.ReadFull(br, got); err != nil || string(got) != tt.echo {
					t.Fatalf("echo %q, %v; want %q", got, err, tt.echo)
				}
				// Later bytes too, over the hijacked connection.
				if _, err := io.WriteString(nc, "later"); err != nil {
					t.Fatal(err)
				}
				got = make([]byte, 5)
				if _, err := io.ReadFull(br, got); err != nil || string(got) != "later" {
					t.Fatalf("echo %q, %v", got, err)
				}
			}
		})
	}
}

// TestUpgradeListenerKeepAlive: a connection handed to net/http is read
// from its first byte, and kept alive for the next request.
func TestUpgradeListenerKeepAlive(t *testing.T) {
	addr := upgradeServer(t)
	client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1}}
	defer client.CloseIdleConnections()
	var remotes []string
	for range 3 {
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/healthz", nil)
		var local string
		req = req.WithContext(withConnTrace(req.Context(), &local))
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || string(body) != "ok" || resp.Header.Get("X-Via") != "net/http" {
			t.Fatalf("%d %q via %q", resp.StatusCode, body, resp.Header.Get("X-Via"))
		}
		remotes = append(remotes, local)
	}
	if remotes[0] != remotes[1] || remotes[1] != remotes[2] {
		t.Fatalf("requests on connections %v: not kept alive", remotes)
	}
}

// TestUpgradeListenerShutdown: a connection still sending its head when
// the server shuts down is closed, and its request never reaches the
// handler chain afterwards.
func TestUpgradeListenerShutdown(t *testing.T) {
	srv := startUpgradeServer(t)
	nc, err := net.Dial("tcp", srv.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if _, err := io.WriteString(nc, "GET /socket.io/?EIO=4 HTTP/1.1\r\nHost: hub.test\r\n"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // the listener is reading the head
	srv.shutdown()
	before := srv.handled.Load()
	_, _ = io.WriteString(nc, "Upgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
	_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	// Closed: an EOF, or a reset for the bytes written after the close.
	if b, err := io.ReadAll(nc); len(b) != 0 || (err != nil && !errors.Is(err, syscall.ECONNRESET)) {
		t.Fatalf("after shutdown the client read %q, %v; want the connection closed", b, err)
	}
	if after := srv.handled.Load(); after != before || before != 0 {
		t.Fatalf("the handler chain saw %d requests, then %d", before, after)
	}
}

// withConnTrace records the local address of the connection a request
// goes out on.
func withConnTrace(ctx context.Context, local *string) context.Context {
	return httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		GotConn: func(info httptrace.GotConnInfo) { *local = info.Conn.LocalAddr().String() },
	})
}
