// Package loadtest is the hub's load tool: a lean Socket.io client that
// speaks the protocol the way socket.io-client does (WebSocket transport,
// Engine.IO heartbeat, namespace CONNECT with an auth payload), and the
// scenarios that `medianest-hub bench` runs against real hub nodes.
//
// The client's WebSocket is the package's own: a load generator shares the
// machine's cores with the server it measures, so it must spend as little
// as it can per received frame. A Poller reads every connection's frames
// from one epoll loop on Linux (no goroutine per connection, many frames
// per read), and the handshake is a single request and response.
package loadtest

import (
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
)

// Client is one Socket.io connection with one namespace socket.
type Client struct {
	ns  string
	SID string

	// The connection: a net.Conn until a Poller takes the descriptor.
	wmu    sync.Mutex // serialises writes, and the hand-over and close
	conn   net.Conn
	fd     int // ≥ 0 once polled
	closed bool

	// pending holds bytes read but not yet parsed: the tail of a frame,
	// or what arrived with the handshake. frag gathers a fragmented
	// message.
	pending []byte
	frag    []byte

	gone     chan struct{}
	goneOnce sync.Once
	kicked   chan struct{}
	// Kicked is when the server disconnected the socket (Unix ns), or 0.
	Kicked atomic.Int64
	// OnEvent, if set before the client is polled, receives every EVENT
	// frame's payload (after the "42<ns>," prefix). The slice is reused
	// for the next frame: copy what must be kept.
	OnEvent func(frame []byte)

	disconnect, kick, event []byte
}

// portsPerSource is how many connections one loopback source address
// carries before the next one is used. The ephemeral range is ≈ 28,000
// ports, but connect(2) searches longer for a free port the fuller an
// address is (TIME_WAIT sockets of earlier runs count): at 19,000 from one
// address the tool spent 470 µs of CPU per connection.
const portsPerSource = 8_000

// SourceFor is the loopback source address of the i-th connection:
// 127.0.0.2 for the first 8,000, then 127.0.0.3, …, so a run can open
// more connections to one hub port than one address has ports.
func SourceFor(i int) net.IP { return net.IPv4(127, 0, 0, byte(2+i/portsPerSource)) }

// handshakeTimeout bounds a dial, the upgrade and the namespace CONNECT.
const handshakeTimeout = 10 * time.Second

// maxFrame is the largest message the client accepts from a hub.
const maxFrame = 16 << 20

// Dial opens a connection to base (http://host:port) and connects to ns
// with token in the CONNECT auth payload.
func Dial(ctx context.Context, base, ns, token string) (*Client, error) {
	return DialFrom(ctx, base, ns, token, nil)
}

// DialFrom is Dial from a given local address (nil = any). The client
// reads nothing more until it is added to a Poller.
func DialFrom(ctx context.Context, base, ns, token string, local net.IP) (*Client, error) {
	u, err := url.Parse(base)
	if err != nil {
		return nil, fmt.Errorf("hub url: %w", err)
	}
	// No keep-alive probes: they cost four setsockopt calls per connection
	// and the hub's pings keep the connection honest.
	d := net.Dialer{Timeout: handshakeTimeout, KeepAlive: -1}
	if local != nil {
		d.LocalAddr = &net.TCPAddr{IP: local}
		d.Control = bindNoPort
	}
	conn, err := d.DialContext(ctx, "tcp", u.Host)
	if err != nil {
		return nil, fmt.Errorf("dial: %w", err)
	}
	c := &Client{conn: conn, fd: -1, ns: ns, gone: make(chan struct{}), kicked: make(chan struct{})}
	prefix := nsPrefix(ns)
	c.disconnect = []byte("41" + prefix)
	c.kick = []byte("42" + prefix + `["server:disconnect"`)
	c.event = []byte("42" + prefix)
	if err := c.handshake(u.Host, token); err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

// wsGUID is RFC 6455's key suffix for Sec-WebSocket-Accept.
const wsGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// handshake upgrades the connection, reads the Engine.IO open packet and
// connects the namespace, answering pings meanwhile.
func (c *Client) handshake(host, token string) error {
	_ = c.conn.SetDeadline(time.Now().Add(handshakeTimeout))
	defer func() { _ = c.conn.SetDeadline(time.Time{}) }()

	var key [16]byte
	binary.LittleEndian.PutUint64(key[:8], rand.Uint64())
	binary.LittleEndian.PutUint64(key[8:], rand.Uint64())
	wsKey := base64.StdEncoding.EncodeToString(key[:])
	req := "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: " + host +
		"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + wsKey +
		"\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err := c.conn.Write([]byte(req)); err != nil {
		return fmt.Errorf("upgrade request: %w", err)
	}
	buf := make([]byte, 0, 1024)
	var end int
	for {
		if len(buf) == cap(buf) {
			if len(buf) >= 16<<10 {
				return errors.New("upgrade: response headers too large")
			}
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := c.conn.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if end = bytes.Index(buf, []byte("\r\n\r\n")); end >= 0 {
			break
		}
		if err != nil {
			return fmt.Errorf("upgrade response: %w", err)
		}
	}
	head := buf[:end]
	status, _, _ := bytes.Cut(head, []byte("\r\n"))
	if !bytes.HasPrefix(status, []byte("HTTP/1.1 101")) {
		return fmt.Errorf("upgrade refused: %s", status)
	}
	sum := sha1.Sum([]byte(wsKey + wsGUID))
	if !hasHeader(head, "sec-websocket-accept", base64.StdEncoding.EncodeToString(sum[:])) {
		return errors.New("upgrade: wrong or missing Sec-WebSocket-Accept")
	}
	c.pending = append(c.pending, buf[end+4:]...)

	open, err := c.readMessage()
	if err != nil || len(open) == 0 || open[0] != '0' {
		return fmt.Errorf("engine.io open: %q %v", open, err)
	}
	auth, _ := json.Marshal(map[string]string{"token": token})
	if err := c.send(append([]byte("40"+nsPrefix(c.ns)), auth...)); err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	accepted := []byte("40" + nsPrefix(c.ns) + "{")
	refused := []byte("44" + nsPrefix(c.ns))
	for {
		msg, err := c.readMessage()
		if err != nil {
			return fmt.Errorf("connect: %w", err)
		}
		switch {
		case len(msg) == 1 && msg[0] == '2':
			if err := c.send([]byte("3")); err != nil {
				return fmt.Errorf("connect: pong: %w", err)
			}
		case bytes.HasPrefix(msg, accepted):
			var ok struct{ SID string }
			_ = json.Unmarshal(msg[len(accepted)-1:], &ok)
			c.SID = ok.SID
			return nil
		case bytes.HasPrefix(msg, refused):
			return fmt.Errorf("connect refused: %s", msg)
		}
	}
}

// hasHeader reports whether the response head has header name (lower
// case) with exactly value.
func hasHeader(head []byte, name, value string) bool {
	for _, line := range bytes.Split(head, []byte("\r\n"))[1:] {
		k, v, ok := bytes.Cut(line, []byte(":"))
		if ok && string(bytes.ToLower(bytes.TrimSpace(k))) == name && string(bytes.TrimSpace(v)) == value {
			return true
		}
	}
	return false
}

// readMessage reads the next text or binary message during the
// handshake, blocking on the connection.
func (c *Client) readMessage() ([]byte, error) {
	var tmp [4096]byte
	for {
		if f, ok, err := parseFrame(c.pending); err != nil {
			return nil, err
		} else if ok {
			c.pending = c.pending[f.size:]
			switch f.op {
			case opPing:
				if err := c.writeFrame(opPong, f.payload); err != nil {
					return nil, err
				}
				continue
			case opClose:
				return nil, errors.New("closed by the server")
			case opText, opBinary, opContinuation:
				if !f.fin || f.op == opContinuation {
					return nil, errors.New("fragmented message during the handshake")
				}
				return f.payload, nil
			}
			continue
		}
		n, err := c.conn.Read(tmp[:])
		c.pending = append(c.pending, tmp[:n]...)
		if err != nil && n == 0 {
			return nil, err
		}
	}
}

func nsPrefix(ns string) string {
	if ns == "/" {
		return ""
	}
	return ns + ","
}

// WebSocket opcodes (RFC 6455 §5.2).
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xA
)

// frame is one parsed server frame; payload aliases the input.
type frame struct {
	op      byte
	fin     bool
	payload []byte
	size    int // header and payload bytes
}

var errFrame = errors.New("websocket: bad frame from the server")

// parseFrame parses the first frame of b. ok is false when b holds only
// part of it. Server frames are never masked.
func parseFrame(b []byte) (f frame, ok bool, err error) {
	if len(b) < 2 {
		return f, false, nil
	}
	f.fin = b[0]&0x80 != 0
	f.op = b[0] & 0x0F
	if b[0]&0x70 != 0 || b[1]&0x80 != 0 {
		return f, false, errFrame
	}
	n, h := uint64(b[1]&0x7F), 2
	switch n {
	case 126:
		if len(b) < 4 {
			return f, false, nil
		}
		n, h = uint64(binary.BigEndian.Uint16(b[2:])), 4
	case 127:
		if len(b) < 10 {
			return f, false, nil
		}
		n, h = binary.BigEndian.Uint64(b[2:]), 10
	}
	if n > maxFrame {
		return f, false, fmt.Errorf("websocket: frame of %d bytes: %w", n, errFrame)
	}
	if uint64(len(b)-h) < n {
		return f, false, nil
	}
	f.payload = b[h : h+int(n)]
	f.size = h + int(n)
	return f, true, nil
}

// consume handles every complete frame of b and returns the incomplete
// tail. An error means the connection is to be closed.
func (c *Client) consume(b []byte) ([]byte, error) {
	for {
		f, ok, err := parseFrame(b)
		if err != nil {
			return nil, err
		}
		if !ok {
			return b, nil
		}
		b = b[f.size:]
		switch f.op {
		case opText, opBinary:
			if !f.fin {
				c.frag = append(c.frag[:0], f.payload...)
				continue
			}
			c.handle(f.payload)
		case opContinuation:
			c.frag = append(c.frag, f.payload...)
			if len(c.frag) > maxFrame {
				return nil, errFrame
			}
			if f.fin {
				c.handle(c.frag)
				c.frag = c.frag[:0]
			}
		case opPing:
			_ = c.writeFrame(opPong, f.payload)
		case opClose:
			return nil, errors.New("closed by the server")
		}
	}
}

// handle acts on one Engine.IO message.
func (c *Client) handle(msg []byte) {
	switch {
	case len(msg) == 1 && msg[0] == '2':
		_ = c.send([]byte("3"))
	case bytes.HasPrefix(msg, c.kick), bytes.Equal(msg, c.disconnect):
		if c.Kicked.CompareAndSwap(0, time.Now().UnixNano()) {
			close(c.kicked)
		}
	case c.OnEvent != nil && bytes.HasPrefix(msg, c.event):
		c.OnEvent(msg[len(c.event):])
	}
}

// send writes one text message.
func (c *Client) send(payload []byte) error { return c.writeFrame(opText, payload) }

// writeFrame writes one masked frame (clients must mask, RFC 6455 §5.3).
func (c *Client) writeFrame(op byte, payload []byte) error {
	var hdr [14]byte
	hdr[0] = 0x80 | op
	h := 2
	switch n := len(payload); {
	case n < 126:
		hdr[1] = 0x80 | byte(n)
	case n <= 0xFFFF:
		hdr[1] = 0x80 | 126
		binary.BigEndian.PutUint16(hdr[2:], uint16(n))
		h = 4
	default:
		hdr[1] = 0x80 | 127
		binary.BigEndian.PutUint64(hdr[2:], uint64(n))
		h = 10
	}
	key := rand.Uint32()
	binary.LittleEndian.PutUint32(hdr[h:], key)
	h += 4
	out := make([]byte, h+len(payload))
	copy(out, hdr[:h])
	mask := hdr[h-4 : h]
	for i, b := range payload {
		out[h+i] = b ^ mask[i&3]
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.write(out)
}

// KickedC is closed when the server disconnects the socket.
func (c *Client) KickedC() <-chan struct{} { return c.kicked }

// Done is closed when the connection has ended.
func (c *Client) Done() <-chan struct{} { return c.gone }

// ended marks the connection over.
func (c *Client) ended() { c.goneOnce.Do(func() { close(c.gone) }) }

// Emit sends an event with JSON arguments.
func (c *Client) Emit(event string, args ...any) error {
	payload, err := json.Marshal(append([]any{event}, args...))
	if err != nil {
		return err
	}
	return c.send(append(bytes.Clone(c.event), payload...))
}
