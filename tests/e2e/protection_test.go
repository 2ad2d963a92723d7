package e2e

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/medianest/hub/internal/config"
)

func TestOriginAllowlist(t *testing.T) {
	h := startHub(t, nil, func(c *config.Config) { c.AllowedOrigins = []string{"https://app.example.com"} })
	d := newDriver(t)
	tok := mint(t, "u1", "user")
	for _, ns := range []string{"/", "/media"} {
		id := "evil" + ns
		d.Connect(id, h.URL, ns, ConnOpts{Token: tok, Headers: map[string]string{"Origin": "https://evil.example.com"}})
		m := d.ExpectAny(id, "connect", "connect_error")
		if m.Type != "connect_error" || m.Message != "Origin not allowed" {
			t.Fatalf("%s: %s %q", ns, m.Type, m.Message)
		}
	}
	d.MustConnect("good", h.URL, "/media", ConnOpts{Token: tok, Headers: map[string]string{"Origin": "https://app.example.com"}})
	d.MustConnect("no-origin", h.URL, "/media", ConnOpts{Token: tok})
	host := strings.TrimPrefix(h.URL, "http://")
	d.MustConnect("same-origin", h.URL, "/media", ConnOpts{Token: tok, Headers: map[string]string{"Origin": "http://" + host}})
}

func TestConnectionRateLimit(t *testing.T) {
	h := startHub(t, nil, func(c *config.Config) { c.RateConnectPerMin = 5 })
	d := newDriver(t)
	tok := mint(t, "u1", "user")
	for i := range 5 {
		d.MustConnect(fmt.Sprint("c", i), h.URL, "/media", ConnOpts{Token: tok})
	}
	d.Connect("sixth", h.URL, "/media", ConnOpts{Token: tok})
	m := d.ExpectAny("sixth", "connect", "connect_error")
	var ce connectErr
	_ = json.Unmarshal(m.Data, &ce)
	if m.Type != "connect_error" || m.Message != "Rate limit exceeded" || ce.Code != "rate_limited" {
		t.Fatalf("sixth: %s %q %s", m.Type, m.Message, m.Data)
	}
	// The other five are unaffected.
	if ack := d.EmitAck("c0", "ping"); ack.Err != nil {
		t.Fatalf("c0 ping: %s", *ack.Err)
	}
}

func TestClientIPBehindTrustedProxy(t *testing.T) {
	h := startHub(t, nil, func(c *config.Config) { c.RateConnectPerMin = 2 })
	// Without trusted proxies, X-Forwarded-For is ignored: every connection
	// counts against 127.0.0.1, whatever the header says.
	d := newDriver(t)
	tok := mint(t, "u1", "user")
	for i := range 2 {
		d.MustConnect(fmt.Sprint("x", i), h.URL, "/media", ConnOpts{Token: tok, Headers: map[string]string{"X-Forwarded-For": fmt.Sprintf("203.0.113.%d", i)}})
	}
	d.Connect("x2", h.URL, "/media", ConnOpts{Token: tok, Headers: map[string]string{"X-Forwarded-For": "203.0.113.99"}})
	if m := d.ExpectAny("x2", "connect", "connect_error"); m.Message != "Rate limit exceeded" {
		t.Fatalf("spoofed X-Forwarded-For was believed: %s %q", m.Type, m.Message)
	}

	trusted := startHub(t, nil, func(c *config.Config) {
		c.RateConnectPerMin = 2
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	})
	for i := range 3 {
		// Each client IP has its own budget behind a trusted proxy.
		d.MustConnect(fmt.Sprint("p", i), trusted.URL, "/media", ConnOpts{Token: tok, Headers: map[string]string{"X-Forwarded-For": fmt.Sprintf("198.51.100.%d", i)}})
	}
	for i := range 2 {
		d.MustConnect(fmt.Sprint("q", i), trusted.URL, "/media", ConnOpts{Token: tok, Headers: map[string]string{"X-Forwarded-For": "198.51.100.50"}})
	}
	d.Connect("q2", trusted.URL, "/media", ConnOpts{Token: tok, Headers: map[string]string{"X-Forwarded-For": "198.51.100.50"}})
	if m := d.ExpectAny("q2", "connect", "connect_error"); m.Message != "Rate limit exceeded" {
		t.Fatalf("third connection of one forwarded IP: %s %q", m.Type, m.Message)
	}
}

func TestEventRateLimit(t *testing.T) {
	h := startHub(t, nil, func(c *config.Config) { c.RateEventsPerMin = 5 })
	d := newDriver(t)
	d.MustConnect("m", h.URL, "/media", ConnOpts{Token: mint(t, "u1", "user")})
	for range 5 {
		d.Emit("m", "ping")
		d.Expect("m", "event", "pong")
	}
	d.Emit("m", "ping")
	var e errPayload
	d.Expect("m", "event", "error").Arg(t, 0, &e)
	if e.Message != "Rate limit exceeded" || e.Code != "rate_limited" {
		t.Fatalf("error = %+v", e)
	}
	d.ExpectNone("m", "event", "pong", 100*time.Millisecond)
	// A refused event that asked for an ack is answered, not left hanging.
	ack := d.EmitAck("m", "ping")
	var refused errPayload
	ack.Arg(t, 0, &refused)
	if refused.Code != "rate_limited" {
		t.Fatalf("ack of a refused event = %s", ack.Args)
	}
	d.Expect("m", "event", "error")
	// A socket that keeps flooding is disconnected.
	for range 10 {
		d.Emit("m", "ping")
	}
	if m := d.Expect("m", "disconnect", ""); m.Reason != "io server disconnect" {
		t.Fatalf("reason = %q", m.Reason)
	}
	metric := scrape(t, h, "medianest_rate_limited_total{limit=\"events\"}")
	if metric == "" || metric == "0" {
		t.Fatalf("rate-limited metric = %q", metric)
	}
}

func TestOversizedFrame(t *testing.T) {
	h := startHub(t, nil, func(c *config.Config) { c.MaxPayload = 4096 })
	d := newDriver(t)
	d.MustConnect("big", h.URL, "/media", ConnOpts{Token: mint(t, "u1", "user")})
	d.Emit("big", "echo", strings.Repeat("x", 8000))
	m := d.Expect("big", "disconnect", "")
	if m.Reason != "transport close" && m.Reason != "transport error" {
		t.Fatalf("reason = %q", m.Reason)
	}
	waitFor(t, 5*time.Second, func() error {
		if v := scrape(t, h, "medianest_oversized_frames_total"); v != "1" {
			return fmt.Errorf("oversized counter = %q", v)
		}
		return nil
	})
	d.MustConnect("next", h.URL, "/media", ConnOpts{Token: mint(t, "u2", "user")})
	d.Emit("next", "echo", strings.Repeat("y", 1000))
	d.Expect("next", "event", "echo")
}

func TestJunkFrames(t *testing.T) {
	h := startHub(t, nil, nil)
	d := newDriver(t)
	ws := "ws" + strings.TrimPrefix(h.URL, "http") + "/socket.io/?EIO=4&transport=websocket"
	junk := []struct {
		name   string
		frames []string
		binary bool
	}{
		{"unknown engine.io type", []string{"9hello"}, false},
		{"empty frame", []string{""}, false},
		{"bad socket.io type", []string{"4x"}, false},
		{"broken json", []string{"40", `42["ping",{`}, false},
		{"reserved event", []string{"40", `42["connect"]`}, false},
		{"event to a namespace not joined then garbage", []string{`42/admin,["x"]`, "4\x00\x01"}, false},
		{"client CONNECT_ERROR", []string{`44{"message":"x"}`}, false},
		{"stray binary frame", []string{base64.StdEncoding.EncodeToString([]byte{1, 2, 3})}, true},
	}
	for i, j := range junk {
		t.Run(j.name, func(t *testing.T) {
			id := fmt.Sprint("raw", i)
			d.Raw(id, ws, nil)
			d.Expect(id, "raw_open", "")
			if m := d.Expect(id, "raw", ""); m.Type != "raw" {
				t.Fatal("no open packet")
			}
			for _, f := range j.frames {
				if j.binary {
					d.RawSendBinary(id, f)
				} else {
					d.RawSend(id, f)
				}
			}
			if m := d.Expect(id, "raw_close", ""); m.Code != 1003 && m.Code != 1006 {
				t.Fatalf("close code %d", m.Code)
			}
		})
	}
	// The node still serves a new client.
	d.MustConnect("after", h.URL, "/media", ConnOpts{Token: mint(t, "u1", "user")})
	if ack := d.EmitAck("after", "ping"); ack.Err != nil {
		t.Fatal(*ack.Err)
	}
	if v := scrape(t, h, "medianest_bad_frames_total"); v == "" || v == "0" {
		t.Fatalf("bad frames counter = %q", v)
	}
}

func TestBinaryRefused(t *testing.T) {
	h := startHub(t, nil, nil)
	d := newDriver(t)
	ws := "ws" + strings.TrimPrefix(h.URL, "http") + "/socket.io/?EIO=4&transport=websocket"
	d.Raw("bin", ws, map[string]string{"Authorization": "Bearer " + mint(t, "u1", "user")})
	d.Expect("bin", "raw", "")
	d.RawSend("bin", "40/media,")
	d.Expect("bin", "raw", "") // CONNECT reply
	d.Expect("bin", "raw", "") // welcome
	d.RawSend("bin", `451-/media,["upload",{"_placeholder":true,"num":0}]`)
	d.RawSendBinary("bin", base64.StdEncoding.EncodeToString([]byte("attachment")))
	if frame := rawFrame(t, d.Expect("bin", "raw", "")); !strings.HasPrefix(frame, `42/media,["error",`) || !strings.Contains(frame, "binary_unsupported") {
		t.Fatalf("binary event answered with %s", frame)
	}
	// The attachment was consumed, and the connection still works.
	d.RawSend("bin", `42/media,["ping"]`)
	if frame := rawFrame(t, d.Expect("bin", "raw", "")); !strings.HasPrefix(frame, `42/media,["pong"`) {
		t.Fatalf("after binary: %s", frame)
	}
}

func TestMultiplexedNamespaces(t *testing.T) {
	h := startHub(t, nil, nil)
	d := newDriver(t)
	tok := mint(t, "a1", "admin")
	for _, ns := range []string{"/", "/media", "/admin", "/system"} {
		d.MustConnect("mx"+ns, h.URL, ns, ConnOpts{Token: tok, Manager: "one"})
	}
	if n := h.App.Node().Connections(); n != 1 {
		t.Fatalf("transport connections = %d, want 1 for four namespaces", n)
	}
	for _, ns := range []string{"/", "/media", "/admin", "/system"} {
		if ack := d.EmitAck("mx"+ns, "user-info"); len(ack.Args) != 1 {
			t.Fatalf("%s user-info ack = %s", ns, ack.Args)
		}
	}
	// Leaving one namespace keeps the others.
	d.Disconnect("mx/media")
	if ack := d.EmitAck("mx/admin", "ping"); ack.Err != nil {
		t.Fatal(*ack.Err)
	}
}

func TestHTTPSurface(t *testing.T) {
	h := startHub(t, nil, nil)
	for _, tt := range []struct {
		path string
		code int
		want string
	}{
		{"/healthz", 200, `"ok"`},
		{"/readyz", 200, `"database":"ok"`},
		{"/metrics", 200, "medianest_transport_connections"},
		{"/nope", 404, "not found"},
		{"/api/v1/connections", 401, "token_missing"},
	} {
		t.Run(tt.path, func(t *testing.T) {
			resp, err := http.Get(h.URL + tt.path)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.code || !strings.Contains(string(b), tt.want) {
				t.Fatalf("%d %s", resp.StatusCode, b)
			}
			for _, hdr := range []string{"X-Content-Type-Options", "X-Frame-Options", "Content-Security-Policy", "Referrer-Policy"} {
				if resp.Header.Get(hdr) == "" {
					t.Fatalf("missing %s", hdr)
				}
			}
		})
	}
}

// rawFrame is the text of a raw WebSocket message report.
func rawFrame(t *testing.T, m Msg) string {
	t.Helper()
	var s string
	if err := json.Unmarshal(m.Data, &s); err != nil {
		t.Fatalf("raw data %s: %v", m.Data, err)
	}
	return s
}

// scrape reads one sample of the hub's /metrics.
func scrape(t *testing.T, h *hubNode, series string) string {
	t.Helper()
	resp, err := http.Get(h.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, series+" ") {
			return strings.TrimPrefix(line, series+" ")
		}
	}
	return ""
}
