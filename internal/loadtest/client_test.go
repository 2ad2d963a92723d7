package loadtest

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/medianest/hub/hub/auth"
	"github.com/medianest/hub/internal/app"
	"github.com/medianest/hub/internal/config"
)

// serverFrame builds an unmasked frame as a server sends it.
func serverFrame(fin bool, op byte, payload []byte) []byte {
	b := []byte{op, 0}
	if fin {
		b[0] |= 0x80
	}
	switch n := len(payload); {
	case n < 126:
		b[1] = byte(n)
	case n <= 0xFFFF:
		b[1] = 126
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b[1] = 127
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	return append(b, payload...)
}

func TestParseFrame(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		ok      bool
		err     bool
		payload int
	}{
		{name: "empty", in: nil},
		{name: "one byte", in: []byte{0x81}},
		{name: "short", in: serverFrame(true, opText, []byte("42[\"x\"]")), ok: true, payload: 7},
		{name: "125 bytes", in: serverFrame(true, opText, make([]byte, 125)), ok: true, payload: 125},
		{name: "126 bytes: 16-bit length", in: serverFrame(true, opText, make([]byte, 126)), ok: true, payload: 126},
		{name: "65535 bytes", in: serverFrame(true, opText, make([]byte, 65535)), ok: true, payload: 65535},
		{name: "65536 bytes: 64-bit length", in: serverFrame(true, opText, make([]byte, 65536)), ok: true, payload: 65536},
		{name: "16-bit length cut", in: serverFrame(true, opText, make([]byte, 300))[:3]},
		{name: "64-bit length cut", in: serverFrame(true, opText, make([]byte, 70000))[:9]},
		{name: "payload cut", in: serverFrame(true, opText, make([]byte, 300))[:200]},
		{name: "masked by the server", in: []byte{0x81, 0x81, 1, 2, 3, 4, 'x'}, err: true},
		{name: "reserved bits", in: []byte{0xC1, 0x01, 'x'}, err: true},
		{name: "too large", in: binary.BigEndian.AppendUint64([]byte{0x82, 127}, maxFrame+1), err: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, ok, err := parseFrame(tt.in)
			if (err != nil) != tt.err {
				t.Fatalf("err = %v, want error %v", err, tt.err)
			}
			if ok != tt.ok {
				t.Fatalf("ok = %v, want %v", ok, tt.ok)
			}
			if ok && (len(f.payload) != tt.payload || f.size != len(tt.in)) {
				t.Fatalf("payload %d bytes, size %d; want %d, %d", len(f.payload), f.size, tt.payload, len(tt.in))
			}
		})
	}
}

// TestConsume feeds a stream of frames to a client in every split: a
// frame cut anywhere is kept and completed by the next read, and a
// fragmented message is reassembled.
func TestConsume(t *testing.T) {
	var stream []byte
	stream = append(stream, serverFrame(true, opText, []byte(`42/media,["a",1]`))...)
	stream = append(stream, serverFrame(true, opText, []byte(`42/media,["b","`+strings.Repeat("x", 300)+`"]`))...)
	stream = append(stream, serverFrame(false, opText, []byte(`42/media,["c",`))...)
	stream = append(stream, serverFrame(true, opContinuation, []byte(`3]`))...)
	stream = append(stream, serverFrame(true, opText, []byte(`41/media,`))...)
	want := []string{`["a",1]`, `["b","` + strings.Repeat("x", 300) + `"]`, `["c",3]`}

	for split := 1; split < len(stream); split += 7 {
		c := &Client{ns: "/media", fd: -1, kicked: make(chan struct{}), disconnect: []byte("41/media,"), kick: []byte(`42/media,["server:disconnect"`), event: []byte("42/media,")}
		var got []string
		c.OnEvent = func(b []byte) { got = append(got, string(b)) }
		var pending []byte
		for _, part := range [][]byte{stream[:split], stream[split:]} {
			rest, err := c.consume(append(pending, part...))
			if err != nil {
				t.Fatalf("split %d: %v", split, err)
			}
			pending = append([]byte(nil), rest...)
		}
		if len(pending) != 0 {
			t.Fatalf("split %d: %d bytes left over", split, len(pending))
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("split %d: events %q, want %q", split, got, want)
		}
		if c.Kicked.Load() == 0 {
			t.Fatalf("split %d: namespace DISCONNECT not recorded", split)
		}
	}
}

const testSecret = "loadtest-test-secret-0123456789abcdef"

// startHub runs a hub node in the test process on its own embedded NATS
// server, with a short ping interval so the client has pings to answer.
func startHub(t *testing.T) string {
	t.Helper()
	cfg := config.Default()
	cfg.JWTSecret = testSecret
	cfg.DataDir = t.TempDir()
	cfg.ListenAddr = "127.0.0.1:0"
	cfg.SessionMode = config.SessionStateless
	cfg.SecurityBlockIPs = false
	cfg.PingInterval = 100 * time.Millisecond
	cfg.PingTimeout = 300 * time.Millisecond
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
	a, err := app.New(context.Background(), cfg, app.Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(a.Handler())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_ = a.Node().Shutdown(ctx)
		srv.Close()
		a.Close()
	})
	return srv.URL
}

func token(t *testing.T, user string) string {
	t.Helper()
	tok, err := auth.Mint([]byte(testSecret), auth.MintOptions{UserID: user, Roles: []string{"user"}, Issuer: "medianest", Audience: "medianest-users", TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestClientAgainstHub runs the client against a real hub: the handshake,
// events in both directions through a room, a message larger than the
// poller's read buffer, pings answered over several intervals, refusal of
// a bad token, and Close ending the connection.
func TestClientAgainstHub(t *testing.T) {
	url := startHub(t)
	ctx := context.Background()
	p, err := NewPoller(1)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()

	if _, err := Dial(ctx, url, "/media", "not-a-token"); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("bad token: err = %v, want a refusal", err)
	}

	var mu sync.Mutex
	got := map[string][]string{}
	clients := map[string]*Client{}
	for _, name := range []string{"alice", "bob"} {
		c, err := Dial(ctx, url, "/media", token(t, name))
		if err != nil {
			t.Fatalf("dial %s: %v", name, err)
		}
		if c.SID == "" {
			t.Fatalf("%s: no socket id in the CONNECT reply", name)
		}
		c.OnEvent = func(b []byte) {
			mu.Lock()
			got[name] = append(got[name], string(b))
			mu.Unlock()
		}
		if err := p.Add(c); err != nil {
			t.Fatal(err)
		}
		clients[name] = c
	}
	waitFor := func(name, prefix, contains string) string {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			mu.Lock()
			for _, e := range got[name] {
				if strings.HasPrefix(e, prefix) && strings.Contains(e, contains) {
					mu.Unlock()
					return e
				}
			}
			mu.Unlock()
			time.Sleep(10 * time.Millisecond)
		}
		t.Fatalf("%s: no event %s; got %q", name, prefix, got[name])
		return ""
	}
	for name, c := range clients {
		if err := c.Emit("join-media-room", map[string]string{"roomId": "film"}); err != nil {
			t.Fatal(err)
		}
		waitFor(name, `["joined-room"`, "")
	}
	if err := clients["alice"].Emit("media-status", map[string]any{"roomId": "film", "at": 42}); err != nil {
		t.Fatal(err)
	}
	waitFor("bob", `["media-status"`, `"at":42`)

	// An echo larger than the poller's read buffer arrives whole.
	big := strings.Repeat("y", 300<<10) // more than the poller reads at once
	if err := clients["alice"].Emit("echo", big); err != nil {
		t.Fatal(err)
	}
	waitFor("alice", `["echo"`, big)

	// Pings every 100 ms with a 300 ms timeout: the client answers them.
	time.Sleep(time.Second)
	for name, c := range clients {
		select {
		case <-c.Done():
			t.Fatalf("%s: connection ended while idle (pings not answered?)", name)
		default:
		}
	}
	if err := clients["alice"].Emit("media-status", map[string]any{"roomId": "film", "at": 43}); err != nil {
		t.Fatal(err)
	}
	waitFor("bob", `["media-status"`, `"at":43`)

	clients["bob"].Close()
	select {
	case <-clients["bob"].Done():
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end the connection")
	}
	if err := clients["bob"].Emit("ping"); err == nil {
		t.Fatal("Emit after Close succeeded")
	}
}
