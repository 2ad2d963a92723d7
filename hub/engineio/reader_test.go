package engineio

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// rawClient is a WebSocket client written by hand, so tests can send
// frames no well-behaved library would: unmasked, fragmented around
// control frames, split at every byte.
type rawClient struct {
	t  *testing.T
	nc net.Conn
	br *bufio.Reader
}

// dialRaw performs the opening handshake over plain TCP, with early (if
// any) sent in the same write as the request, and reads the open packet.
func dialRaw(t *testing.T, url string, early []byte) *rawClient {
	t.Helper()
	addr := strings.TrimPrefix(strings.SplitN(url, "/?", 2)[0], "ws://")
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	req := "GET /?EIO=4&transport=websocket HTTP/1.1\r\nHost: " + addr +
		"\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Version: 13\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
	if _, err := nc.Write(append([]byte(req), early...)); err != nil {
		t.Fatal(err)
	}
	_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	c := &rawClient{t: t, nc: nc, br: bufio.NewReader(nc)}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		t.Fatal(err)
	}
	// RFC 6455 §1.3's sample key and its accept value.
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Sec-WebSocket-Accept") != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		t.Fatalf("handshake: %d, accept %q", resp.StatusCode, resp.Header.Get("Sec-WebSocket-Accept"))
	}
	if op, msg := c.next(); op != opText || msg[0] != '0' {
		t.Fatalf("open packet: op %d %q", op, msg)
	}
	return c
}

// clientFrame encodes one client frame, masked unless mask is false.
func clientFrame(b0 byte, payload []byte, mask bool) []byte {
	b := []byte{b0}
	mbit := byte(0)
	if mask {
		mbit = 0x80
	}
	switch n := len(payload); {
	case n < 126:
		b = append(b, mbit|byte(n))
	case n <= 0xffff:
		b = append(b, mbit|126, byte(n>>8), byte(n))
	default:
		b = append(b, mbit|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	if !mask {
		return append(b, payload...)
	}
	key := [4]byte{0x37, 0xfa, 0x21, 0x3d}
	b = append(b, key[:]...)
	for i, c := range payload {
		b = append(b, c^key[i&3])
	}
	return b
}

func (c *rawClient) send(frames ...[]byte) {
	c.t.Helper()
	if _, err := c.nc.Write(bytes.Join(frames, nil)); err != nil {
		c.t.Fatal(err)
	}
}

// next reads one server frame.
func (c *rawClient) next() (byte, []byte) {
	c.t.Helper()
	var h [2]byte
	if _, err := io.ReadFull(c.br, h[:]); err != nil {
		c.t.Fatalf("read frame: %v", err)
	}
	if h[1]&0x80 != 0 {
		c.t.Fatal("server frame masked")
	}
	n := int(h[1] & 0x7f)
	switch n {
	case 126:
		var l [2]byte
		_, _ = io.ReadFull(c.br, l[:])
		n = int(binary.BigEndian.Uint16(l[:]))
	case 127:
		var l [8]byte
		_, _ = io.ReadFull(c.br, l[:])
		n = int(binary.BigEndian.Uint64(l[:]))
	}
	msg := make([]byte, n)
	if _, err := io.ReadFull(c.br, msg); err != nil {
		c.t.Fatalf("read payload: %v", err)
	}
	return h[0] & 0x0f, msg
}

// nextData skips pings and returns the next data frame.
func (c *rawClient) nextData() (byte, []byte) {
	c.t.Helper()
	for {
		op, msg := c.next()
		if op == opText && string(msg) == "2" {
			continue
		}
		return op, msg
	}
}

// closeCode reads until the server's close frame and returns its code.
func (c *rawClient) closeCode() int {
	c.t.Helper()
	for {
		op, msg := c.next()
		if op == opClose {
			if len(msg) < 2 {
				return 1005
			}
			return int(binary.BigEndian.Uint16(msg))
		}
	}
}

func TestReaderFrames(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789"), 100_000) // a 1 MB message
	const maxPayload = 2 << 20
	nearMax := append([]byte("4"), bytes.Repeat([]byte("a"), maxPayload-51)...)
	tests := []struct {
		name string
		send func(c *rawClient)
		want []string // echoed messages, in order (the recorder echoes each message packet)
	}{
		{"one frame", func(c *rawClient) { c.send(clientFrame(0x81, []byte("4hello"), true)) }, []string{"4hello"}},
		{"several frames in one write", func(c *rawClient) {
			c.send(clientFrame(0x81, []byte("4a"), true), clientFrame(0x81, []byte("4b"), true), clientFrame(0x81, []byte("4c"), true))
		}, []string{"4a", "4b", "4c"}},
		{"fragmented around a ping", func(c *rawClient) {
			c.send(clientFrame(0x01, []byte("4fr"), true), clientFrame(0x89, []byte("p"), true), clientFrame(0x00, []byte("ag"), true), clientFrame(0x80, []byte("ment"), true))
		}, []string{"4fragment"}},
		{"split at every byte", func(c *rawClient) {
			b := append(clientFrame(0x81, []byte("4slow"), true), clientFrame(0x81, append([]byte("4"), bytes.Repeat([]byte("y"), 300)...), true)...)
			for i := range b {
				c.send(b[i : i+1])
				if i%7 == 0 {
					time.Sleep(time.Millisecond)
				}
			}
		}, []string{"4slow", "4" + strings.Repeat("y", 300)}},
		{"1 MB message", func(c *rawClient) { c.send(clientFrame(0x81, append([]byte("4"), big...), true)) }, []string{"4" + string(big)}},
		{"a ping inside a message of maxPayload", func(c *rawClient) {
			// The ping does not count towards the message's size.
			c.send(clientFrame(0x01, nearMax, true), clientFrame(0x89, make([]byte, 100), true), clientFrame(0x80, []byte(strings.Repeat("b", 50)), true))
		}, []string{string(nearMax) + strings.Repeat("b", 50)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, url := serve(t, Config{MaxPayload: maxPayload})
			c := dialRaw(t, url, nil)
			tt.send(c)
			for _, want := range tt.want {
				op, msg := c.nextData()
				if op == opPong {
					op, msg = c.nextData()
				}
				if op != opText || string(msg) != want {
					t.Fatalf("got op %d %.40q (%d bytes), want %.40q (%d bytes)", op, msg, len(msg), want, len(want))
				}
			}
		})
	}
}

func TestReaderPingAndEarlyData(t *testing.T) {
	_, _, url := serve(t, Config{})
	// A frame sent in the same write as the upgrade request is not lost.
	c := dialRaw(t, url, clientFrame(0x81, []byte("4early"), true))
	if op, msg := c.nextData(); op != opText || string(msg) != "4early" {
		t.Fatalf("early frame echo: op %d %q", op, msg)
	}
	c.send(clientFrame(0x89, []byte("are you there"), true))
	if op, msg := c.nextData(); op != opPong || string(msg) != "are you there" {
		t.Fatalf("pong: op %d %q", op, msg)
	}
}

func TestReaderRefusesBadFrames(t *testing.T) {
	tests := []struct {
		name   string
		frame  []byte
		code   int
		reason string
	}{
		{"unmasked", clientFrame(0x81, []byte("4x"), false), 1002, ReasonTransportError},
		{"reserved bit", clientFrame(0xc1, []byte("4x"), true), 1002, ReasonTransportError},
		{"unknown opcode", clientFrame(0x83, []byte("4x"), true), 1002, ReasonTransportError},
		{"fragmented ping", clientFrame(0x09, []byte("p"), true), 1002, ReasonTransportError},
		{"continuation first", clientFrame(0x80, []byte("4x"), true), 1002, ReasonTransportError},
		{"over maxPayload", clientFrame(0x81, make([]byte, 2000), true), 1009, ReasonPayloadTooBig},
		{"peer's close is answered", clientFrame(0x88, []byte{0x03, 0xe8}, true), 1000, ReasonTransportClose},
		{"peer's close code is echoed", clientFrame(0x88, []byte{0x0f, 0xa0}, true), 4000, ReasonTransportClose},
		{"close of one byte", clientFrame(0x88, []byte{0x03}, true), 1002, ReasonTransportError},
		{"close code 1005 is for reporting only", clientFrame(0x88, []byte{0x03, 0xed}, true), 1002, ReasonTransportError},
		{"close code 999", clientFrame(0x88, []byte{0x03, 0xe7}, true), 1002, ReasonTransportError},
		{"close code 5000", clientFrame(0x88, []byte{0x13, 0x88}, true), 1002, ReasonTransportError},
		{"a fragment takes the message over maxPayload", append(clientFrame(0x01, make([]byte, 600), true), clientFrame(0x80, make([]byte, 600), true)...), 1009, ReasonPayloadTooBig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, rec, url := serve(t, Config{MaxPayload: 1024})
			c := dialRaw(t, url, nil)
			c.send(tt.frame)
			if code := c.closeCode(); code != tt.code {
				t.Fatalf("close code %d, want %d", code, tt.code)
			}
			select {
			case reason := <-rec.closed:
				if reason != tt.reason {
					t.Fatalf("reason %q, want %q", reason, tt.reason)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("not closed")
			}
			// The server closes the TCP connection after its close frame.
			_ = c.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.br.ReadByte(); err != io.EOF {
				t.Fatalf("after the close frame: %v, want EOF", err)
			}
		})
	}
}

func TestHandshakeRefusals(t *testing.T) {
	_, _, url := serve(t, Config{})
	base := "http" + strings.TrimPrefix(url, "ws")
	tests := []struct {
		name    string
		headers map[string]string
	}{
		{"no upgrade header", map[string]string{"Connection": "Upgrade", "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}},
		{"version 8", map[string]string{"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "8", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}},
		{"short key", map[string]string{"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "c2hvcnQ="}},
		{"connection without upgrade", map[string]string{"Upgrade": "websocket", "Connection": "keep-alive", "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}},
		{"upgrade to another protocol", map[string]string{"Upgrade": "h2c", "Connection": "Upgrade", "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}},
		{"key not base64", map[string]string{"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "not base64 at all!!!!!!!"}},
		{"no key", map[string]string{"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, base, nil)
			for k, v := range tt.headers {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), `"code":3`) {
				t.Fatalf("%d %s", resp.StatusCode, body)
			}
		})
	}
}

// TestParseHeaderLimit: a frame's announced length is judged against the
// limit as a 64-bit number, so no length wraps into a small or negative
// int on a 32-bit build.
func TestParseHeaderLimit(t *testing.T) {
	header := func(n uint64) []byte {
		b := []byte{0x82, 0x80 | 127, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4}
		binary.BigEndian.PutUint64(b[2:], n)
		return b
	}
	tests := []struct {
		name string
		n    uint64
		err  error
	}{
		{"at the limit", 1 << 20, nil},
		{"one over", 1<<20 + 1, errTooBig},
		{"2^31, negative as an int32", 1 << 31, errTooBig},
		{"2^32, zero as an int32", 1 << 32, errTooBig},
		{"2^62", 1 << 62, errTooBig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, ok, err := parseHeader(header(tt.n), 1<<20)
			if !errors.Is(err, tt.err) {
				t.Fatalf("err %v, want %v", err, tt.err)
			}
			if err == nil && (!ok || uint64(h.n) != tt.n || h.hdr != 14) {
				t.Fatalf("header %+v ok %v", h, ok)
			}
		})
	}
}

// TestGrowFor: the buffer for an unfinished frame grows with what has
// arrived, never to the announced size on the header's word alone.
func TestGrowFor(t *testing.T) {
	tests := []struct {
		name      string
		have      int
		need      int
		wantAtMin int
		wantAtMax int
	}{
		{"size unknown", 10, 0, 10 + readChunk, 10 + readChunk},
		{"small frame: all of it", 10, 100, 10 + readChunk, 10 + readChunk},
		{"1 MB announced, 14 bytes here", 14, 1 << 20, 14 + readChunk, 14 + readChunk},
		{"1 MB announced, 100 KB here", 100 << 10, 1 << 20, 200 << 10, 200 << 10},
		{"1 MB announced, 900 KB here", 900 << 10, 1 << 20, 1 << 20, 1 << 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := make([]byte, tt.have)
			in[0] = 'x'
			out := growFor(in, tt.need)
			if len(out) != tt.have || out[0] != 'x' {
				t.Fatalf("len %d, first %q: the bytes that arrived are not kept", len(out), out[0])
			}
			if cap(out) < tt.wantAtMin || cap(out) > tt.wantAtMax {
				t.Fatalf("cap %d, want %d..%d", cap(out), tt.wantAtMin, tt.wantAtMax)
			}
		})
	}
}

func BenchmarkMaskCopy(b *testing.B) {
	src := make([]byte, 100)
	dst := make([]byte, 100)
	key := [4]byte{1, 2, 3, 4}
	b.SetBytes(int64(len(src)))
	for b.Loop() {
		maskCopy(dst, src, key)
	}
	_ = fmt.Sprint(dst[0])
}
