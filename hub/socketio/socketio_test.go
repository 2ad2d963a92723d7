package socketio

import (
	"encoding/json"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"github.com/medianest/hub/hub/engineio"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type client struct {
	t  *testing.T
	ws *websocket.Conn
}

func newTestServer(t *testing.T, setup func(*Server)) string {
	t.Helper()
	s := NewServer(engineio.Config{PingInterval: time.Minute}, zerolog.Nop())
	setup(s)
	hs := httptest.NewServer(s)
	t.Cleanup(func() {
		done := make(chan struct{})
		close(done)
		s.Shutdown(done)
		hs.Close()
	})
	return "ws" + strings.TrimPrefix(hs.URL, "http") + "/?EIO=4&transport=websocket"
}

func dial(t *testing.T, url string) *client {
	t.Helper()
	ws, _, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.Close() })
	c := &client{t: t, ws: ws}
	c.read() // open
	return c
}

func (c *client) send(s string) {
	c.t.Helper()
	if err := c.ws.WriteMessage(websocket.TextMessage, []byte(s)); err != nil {
		c.t.Fatal(err)
	}
}

func (c *client) read() string {
	c.t.Helper()
	_ = c.ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, m, err := c.ws.ReadMessage()
	if err != nil {
		c.t.Fatal(err)
	}
	return string(m)
}

func TestServerToClientAck(t *testing.T) {
	results := make(chan string, 4)
	url := newTestServer(t, func(s *Server) {
		ns := s.Of("/x")
		ns.OnConnect = func(sock *Socket) {
			sock.EmitWithAck("question", 5*time.Second, func(args []json.RawMessage, err error) {
				if err != nil {
					results <- "error: " + err.Error()
					return
				}
				results <- string(args[0])
			}, "what?")
			sock.EmitWithAck("never-answered", 50*time.Millisecond, func(_ []json.RawMessage, err error) {
				if errors.Is(err, ErrAckTimeout) {
					results <- "timeout"
				}
			})
		}
	})
	c := dial(t, url)
	c.send("40/x,")
	if m := c.read(); !strings.HasPrefix(m, `40/x,{"sid":"`) {
		t.Fatalf("connect reply %q", m)
	}
	if m := c.read(); m != `42/x,0["question","what?"]` {
		t.Fatalf("question %q", m)
	}
	if m := c.read(); m != `42/x,1["never-answered"]` {
		t.Fatalf("second %q", m)
	}
	c.send(`43/x,0["answer"]`)
	got := map[string]bool{}
	for range 2 {
		select {
		case r := <-results:
			got[r] = true
		case <-time.After(5 * time.Second):
			t.Fatalf("results so far: %v", got)
		}
	}
	if !got[`"answer"`] || !got["timeout"] {
		t.Fatalf("results = %v", got)
	}
	// An ack for an unknown id is ignored.
	c.send(`43/x,99["late"]`)
	c.send(`42/x,["still-alive"]`)
}

func TestDisconnectFailsPendingAcks(t *testing.T) {
	failed := make(chan error, 1)
	url := newTestServer(t, func(s *Server) {
		s.Of("/").OnConnect = func(sock *Socket) {
			sock.EmitWithAck("q", time.Minute, func(_ []json.RawMessage, err error) { failed <- err })
		}
	})
	c := dial(t, url)
	c.send("40")
	c.read()
	c.read()
	c.send("41")
	select {
	case err := <-failed:
		if !errors.Is(err, ErrDisconnected) {
			t.Fatalf("err = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("pending ack not failed on disconnect")
	}
}

func TestRoomsAndBroadcast(t *testing.T) {
	ready := make(chan *Socket, 3)
	var ns *Namespace
	url := newTestServer(t, func(s *Server) {
		ns = s.Of("/")
		ns.OnConnect = func(sock *Socket) { ready <- sock }
	})
	clients := make([]*client, 3)
	socks := make([]*Socket, 3)
	for i := range clients {
		clients[i] = dial(t, url)
		clients[i].send("40")
		clients[i].read()
		socks[i] = <-ready
	}
	socks[0].Join("r")
	socks[1].Join("r")
	socks[1].Join("r") // joining twice is harmless
	if n := ns.RoomLen("r"); n != 2 {
		t.Fatalf("room size %d", n)
	}
	if n, err := ns.EmitTo("r", "hello", 1); err != nil || n != 2 {
		t.Fatalf("EmitTo = %d, %v", n, err)
	}
	for _, i := range []int{0, 1} {
		if m := clients[i].read(); m != `42["hello",1]` {
			t.Fatalf("client %d got %q", i, m)
		}
	}
	if n := ns.BroadcastFrame("r", []byte(`42["x"]`), socks[0].ID()); n != 1 {
		t.Fatalf("broadcast with except = %d", n)
	}
	if m := clients[1].read(); m != `42["x"]` {
		t.Fatalf("got %q", m)
	}
	if n := ns.BroadcastFrame("", []byte(`42["all"]`)); n != 3 {
		t.Fatalf("broadcast to all = %d", n)
	}
	socks[1].Leave("r")
	if !socks[0].In("r") || socks[1].In("r") || ns.RoomLen("r") != 1 {
		t.Fatal("leave did not update membership")
	}
	// A disconnected socket leaves every room.
	socks[0].Disconnect()
	if m := clients[0].read(); m != `42["all"]` {
		t.Fatalf("got %q", m)
	}
	if m := clients[0].read(); m != "41" {
		t.Fatalf("disconnect packet %q", m)
	}
	if ns.RoomLen("r") != 0 || ns.Len() != 2 || ns.Socket(socks[0].ID()) != nil {
		t.Fatalf("after disconnect: room %d, len %d", ns.RoomLen("r"), ns.Len())
	}
}

func TestMiddlewareRefusalAndPanic(t *testing.T) {
	url := newTestServer(t, func(s *Server) {
		s.Of("/locked").Middleware = func(*Socket, json.RawMessage) error {
			return &ConnectError{Message: "nope", Data: map[string]string{"code": "x"}}
		}
		s.Of("/broken").Middleware = func(*Socket, json.RawMessage) error { return errors.New("db down") }
		s.Of("/panic").On("boom", func(*Socket, []json.RawMessage, Ack) { panic("bug") })
		s.Of("/crash").Middleware = func(*Socket, json.RawMessage) error { panic("admission bug") }
	})
	c := dial(t, url)
	c.send("40/locked,")
	if m := c.read(); m != `44/locked,{"message":"nope","data":{"code":"x"}}` {
		t.Fatalf("refusal %q", m)
	}
	c.send("40/broken,")
	if m := c.read(); m != `44/broken,{"message":"Internal error"}` {
		t.Fatalf("internal refusal %q", m)
	}
	c.send("40/panic,")
	c.read()
	c.send(`42/panic,["boom"]`)
	_ = c.ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, _, err := c.ws.ReadMessage(); !websocket.IsCloseError(err, websocket.CloseInternalServerErr) {
		t.Fatalf("after a handler panic: %v", err)
	}
	// A panic in admission (on an admitter goroutine) costs its
	// connection too, and nothing else.
	c3 := dial(t, url)
	c3.send("40/crash,")
	_ = c3.ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, _, err := c3.ws.ReadMessage(); !websocket.IsCloseError(err, websocket.CloseInternalServerErr) {
		t.Fatalf("after an admission panic: %v", err)
	}
	// The server survives, and its admitters still admit.
	c2 := dial(t, url)
	c2.send("40/locked,")
	if m := c2.read(); !strings.HasPrefix(m, "44/locked,") {
		t.Fatalf("after the panics: %q", m)
	}
}

func TestIdleAndFailingConnectionsAreClosed(t *testing.T) {
	url := newTestServer(t, func(s *Server) {
		s.ConnectTimeout = 100 * time.Millisecond
		s.MaxConnectFailures = 3
		s.Of("/locked").Middleware = func(*Socket, json.RawMessage) error { return &ConnectError{Message: "nope"} }
		s.Of("/open")
	})
	t.Run("no CONNECT within the timeout", func(t *testing.T) {
		c := dial(t, url)
		_ = c.ws.SetReadDeadline(time.Now().Add(5 * time.Second))
		for {
			if _, _, err := c.ws.ReadMessage(); err != nil {
				return // closed
			}
		}
	})
	t.Run("a connected socket keeps the connection", func(t *testing.T) {
		c := dial(t, url)
		c.send("40/open,")
		c.read()
		_ = c.ws.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		if _, _, err := c.ws.ReadMessage(); err == nil || websocket.IsCloseError(err) || !strings.Contains(err.Error(), "timeout") {
			t.Fatalf("expected a read timeout on an open connection, got %v", err)
		}
	})
	t.Run("the last socket's leaving arms the timeout again", func(t *testing.T) {
		c := dial(t, url)
		c.send("40/open,")
		c.read()
		c.send("41/open,")
		_ = c.ws.SetReadDeadline(time.Now().Add(5 * time.Second))
		for {
			if _, _, err := c.ws.ReadMessage(); err != nil {
				if !websocket.IsCloseError(err, websocket.CloseNormalClosure) {
					t.Fatalf("closed with %v, want a normal close after the timeout", err)
				}
				return
			}
		}
	})
	t.Run("too many refused CONNECTs", func(t *testing.T) {
		c := dial(t, url)
		for range 3 {
			c.send("40/locked,")
			if m := c.read(); !strings.HasPrefix(m, "44/locked,") {
				t.Fatalf("got %q", m)
			}
		}
		_ = c.ws.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, _, err := c.ws.ReadMessage(); !websocket.IsCloseError(err, websocket.CloseNormalClosure) {
			t.Fatalf("after three refusals: %v", err)
		}
	})
}

func TestJoinAfterDisconnectIsIgnored(t *testing.T) {
	ready := make(chan *Socket, 1)
	var ns *Namespace
	url := newTestServer(t, func(s *Server) {
		ns = s.Of("/")
		ns.OnConnect = func(sock *Socket) { ready <- sock }
	})
	c := dial(t, url)
	c.send("40")
	c.read()
	sock := <-ready
	sock.Join("a")
	sock.Disconnect()
	sock.Join("b") // a late join, say from a control message
	if ns.RoomLen("a") != 0 || ns.RoomLen("b") != 0 || sock.RoomCount() != 0 {
		t.Fatalf("rooms after disconnect: a=%d b=%d own=%d", ns.RoomLen("a"), ns.RoomLen("b"), sock.RoomCount())
	}
}
