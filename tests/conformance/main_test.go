package main

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/rs/zerolog"
)

func TestConformanceHandlers(t *testing.T) {
	h, shutdown := newHandler(zerolog.Nop())
	srv := httptest.NewServer(h)
	defer srv.Close()
	defer shutdown()
	base := "ws" + strings.TrimPrefix(srv.URL, "http")

	dial := func(t *testing.T, path string) *websocket.Conn {
		t.Helper()
		ws, _, err := websocket.DefaultDialer.Dial(base+path+"?EIO=4&transport=websocket", nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ws.Close() })
		return ws
	}
	// read returns the next frame that is not a ping, answering pings.
	read := func(t *testing.T, ws *websocket.Conn) (int, string) {
		t.Helper()
		for {
			_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
			typ, msg, err := ws.ReadMessage()
			if err != nil {
				t.Fatal(err)
			}
			if typ == websocket.TextMessage && string(msg) == "2" {
				_ = ws.WriteMessage(websocket.TextMessage, []byte("3"))
				continue
			}
			return typ, string(msg)
		}
	}
	send := func(t *testing.T, ws *websocket.Conn, s string) {
		t.Helper()
		if err := ws.WriteMessage(websocket.TextMessage, []byte(s)); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("engine.io echo", func(t *testing.T) {
		ws := dial(t, "/engine.io/")
		if _, open := read(t, ws); !strings.Contains(open, `"pingInterval":300`) || !strings.Contains(open, `"pingTimeout":200`) {
			t.Fatalf("open = %s", open)
		}
		send(t, ws, "4hello")
		if _, m := read(t, ws); m != "4hello" {
			t.Fatalf("echo = %q", m)
		}
		_ = ws.WriteMessage(websocket.BinaryMessage, []byte{1, 2, 3})
		if typ, m := read(t, ws); typ != websocket.BinaryMessage || m != "\x01\x02\x03" {
			t.Fatalf("binary echo = %d %q", typ, m)
		}
	})

	tests := []struct {
		name    string
		connect string
		replies []string // prefixes, in order
	}{
		{"root without auth", "40", []string{`40{"sid":"`, `42["auth",{}]`}},
		{"root with auth", `40{"token":"123"}`, []string{`40{"sid":"`, `42["auth",{"token":"123"}]`}},
		{"custom namespace", `40/custom,{"a":1}`, []string{`40/custom,{"sid":"`, `42/custom,["auth",{"a":1}]`}},
		{"invalid namespace", "40/random,", []string{`44/random,{"message":"Invalid namespace"}`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ws := dial(t, "/socket.io/")
			read(t, ws)
			send(t, ws, tt.connect)
			for _, want := range tt.replies {
				if _, m := read(t, ws); !strings.HasPrefix(m, want) {
					t.Fatalf("got %q, want prefix %q", m, want)
				}
			}
		})
	}

	t.Run("message-back and ack", func(t *testing.T) {
		ws := dial(t, "/socket.io/")
		read(t, ws)
		send(t, ws, "40")
		read(t, ws)
		read(t, ws)
		send(t, ws, `42["message",1,"2",{"3":[true]}]`)
		if _, m := read(t, ws); m != `42["message-back",1,"2",{"3":[true]}]` {
			t.Fatalf("message-back = %q", m)
		}
		send(t, ws, `42456["message-with-ack",1,"2",{"3":[false]}]`)
		if _, m := read(t, ws); m != `43456[1,"2",{"3":[false]}]` {
			t.Fatalf("ack = %q", m)
		}
	})

	t.Run("heartbeat", func(t *testing.T) {
		ws := dial(t, "/socket.io/")
		read(t, ws)
		_ = ws.SetReadDeadline(time.Now().Add(2 * time.Second))
		_, m, err := ws.ReadMessage()
		if err != nil || string(m) != "2" {
			t.Fatalf("expected a ping within the interval, got %q, %v", m, err)
		}
		// No pong: the server closes within pingTimeout.
		_ = ws.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, _, err := ws.ReadMessage(); err == nil {
			t.Fatal("connection still open after a missed pong")
		}
	})
}
