// Package loadtest is the hub's load tool: a lean Socket.io client that
// speaks the protocol the way socket.io-client does (WebSocket transport,
// Engine.IO heartbeat, namespace CONNECT with an auth payload), and the
// scenarios that `medianest-hub bench` runs against real hub nodes.
package loadtest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// Client is one Socket.io connection with one namespace socket.
type Client struct {
	ws     *websocket.Conn
	ns     string
	SID    string
	gone   chan struct{}
	kicked chan struct{}
	// Kicked is when the server disconnected the socket (Unix ns), or 0.
	Kicked atomic.Int64
	// OnEvent, if set before Run, receives every EVENT frame's payload.
	// The slice is reused for the next frame: copy what must be kept.
	OnEvent func(frame []byte)
}

var dialer = &websocket.Dialer{HandshakeTimeout: 10 * time.Second, ReadBufferSize: 1024, WriteBufferSize: 1024}

// portsPerSource is how many connections one loopback source address
// carries before the next one is used (the ephemeral range is ≈ 28,000).
const portsPerSource = 25_000

// SourceFor is the loopback source address of the i-th connection:
// 127.0.0.2 for the first 25,000, then 127.0.0.3, …, so a run can open
// more connections to one hub port than one address has ports.
func SourceFor(i int) net.IP { return net.IPv4(127, 0, 0, byte(2+i/portsPerSource)) }

// Dial opens a connection to base (http://host:port) and connects to ns
// with token in the CONNECT auth payload.
func Dial(ctx context.Context, base, ns, token string) (*Client, error) {
	return DialFrom(ctx, base, ns, token, nil)
}

// DialFrom is Dial from a given local address (nil = any).
func DialFrom(ctx context.Context, base, ns, token string, local net.IP) (*Client, error) {
	u, err := url.Parse(base)
	if err != nil {
		return nil, err
	}
	u.Scheme = strings.Replace(u.Scheme, "http", "ws", 1)
	u.Path = "/socket.io/"
	u.RawQuery = "EIO=4&transport=websocket"
	d := dialer
	if local != nil {
		cp := *dialer
		cp.NetDialContext = (&net.Dialer{LocalAddr: &net.TCPAddr{IP: local}, Timeout: 10 * time.Second}).DialContext
		d = &cp
	}
	ws, _, err := d.DialContext(ctx, u.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("dial: %w", err)
	}
	c := &Client{ws: ws, ns: ns, gone: make(chan struct{}), kicked: make(chan struct{})}
	_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, open, err := ws.ReadMessage(); err != nil || len(open) == 0 || open[0] != '0' {
		ws.Close()
		return nil, fmt.Errorf("engine.io open: %q %v", open, err)
	}
	auth, _ := json.Marshal(map[string]string{"token": token})
	connect := "40"
	if ns != "/" {
		connect += ns + ","
	}
	if err := ws.WriteMessage(websocket.TextMessage, append([]byte(connect), auth...)); err != nil {
		ws.Close()
		return nil, err
	}
	for {
		_, msg, err := ws.ReadMessage()
		if err != nil {
			ws.Close()
			return nil, fmt.Errorf("connect: %w", err)
		}
		switch {
		case bytes.Equal(msg, []byte("2")):
			_ = ws.WriteMessage(websocket.TextMessage, []byte("3"))
		case bytes.HasPrefix(msg, []byte(connect[:2]+nsPrefix(ns)+"{")), bytes.HasPrefix(msg, []byte("40"+nsPrefix(ns)+"{")):
			var ok struct{ SID string }
			_ = json.Unmarshal(msg[bytes.IndexByte(msg, '{'):], &ok)
			c.SID = ok.SID
			_ = ws.SetReadDeadline(time.Time{})
			return c, nil
		case bytes.HasPrefix(msg, []byte("44")):
			ws.Close()
			return nil, fmt.Errorf("connect refused: %s", msg)
		}
	}
}

func nsPrefix(ns string) string {
	if ns == "/" {
		return ""
	}
	return ns + ","
}

// Run reads until the connection ends, answering pings and recording a
// server disconnect. It closes Done when it returns.
func (c *Client) Run() {
	defer close(c.gone)
	disconnect := []byte("41" + nsPrefix(c.ns))
	kick := []byte("42" + nsPrefix(c.ns) + `["server:disconnect"`)
	event := []byte("42" + nsPrefix(c.ns))
	var buf bytes.Buffer // reused: no allocation per received frame
	for {
		_, r, err := c.ws.NextReader()
		if err != nil {
			return
		}
		buf.Reset()
		if _, err := buf.ReadFrom(r); err != nil {
			return
		}
		msg := buf.Bytes() // valid until the next frame; OnEvent must not keep it
		switch {
		case len(msg) == 1 && msg[0] == '2':
			_ = c.ws.WriteMessage(websocket.TextMessage, []byte("3"))
		case bytes.HasPrefix(msg, kick), bytes.Equal(msg, disconnect):
			if c.Kicked.CompareAndSwap(0, time.Now().UnixNano()) {
				close(c.kicked)
			}
		case c.OnEvent != nil && bytes.HasPrefix(msg, event):
			c.OnEvent(msg[len(event):])
		}
	}
}

// KickedC is closed when the server disconnects the socket.
func (c *Client) KickedC() <-chan struct{} { return c.kicked }

// Done is closed when Run returns.
func (c *Client) Done() <-chan struct{} { return c.gone }

// Emit sends an event with JSON arguments.
func (c *Client) Emit(event string, args ...any) error {
	payload, err := json.Marshal(append([]any{event}, args...))
	if err != nil {
		return err
	}
	return c.ws.WriteMessage(websocket.TextMessage, append([]byte("42"+nsPrefix(c.ns)), payload...))
}

// Close closes the connection.
func (c *Client) Close() error { return c.ws.Close() }
