package engineio

import (
	"bytes"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// The WebSocket side of a connection (RFC 6455), server end: the opening
// handshake, and a frame reader that holds no buffer while the connection
// is idle. Its goroutine waits for the socket to become readable with
// nothing allocated (a [syscall.RawConn] read), takes a pooled buffer for
// each read, and keeps only the unfinished tail of a frame between reads.

// acceptGUID is RFC 6455's key suffix for Sec-WebSocket-Accept.
const acceptGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// checkUpgrade validates a WebSocket opening handshake and returns the
// Sec-WebSocket-Accept value to answer with. Every refusal is a 400
// (Engine.IO's "Bad request"); the error says why, for the debug log.
func checkUpgrade(r *http.Request) (string, error) {
	switch {
	case !headerHasToken(r.Header, "Connection", "upgrade"):
		return "", errors.New("connection header lacks upgrade")
	case !headerHasToken(r.Header, "Upgrade", "websocket"):
		return "", errors.New("upgrade header is not websocket")
	case r.Header.Get("Sec-Websocket-Version") != "13":
		return "", errors.New("websocket version is not 13")
	}
	key := r.Header.Get("Sec-Websocket-Key")
	if raw, err := base64.StdEncoding.DecodeString(key); err != nil || len(raw) != 16 {
		return "", errors.New("bad Sec-WebSocket-Key")
	}
	h := sha1.New()
	h.Write([]byte(key))
	h.Write([]byte(acceptGUID))
	return base64.StdEncoding.EncodeToString(h.Sum(nil)), nil
}

// headerHasToken reports whether a comma-separated header lists token
// (case-insensitive).
func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for part := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(part), token) {
				return true
			}
		}
	}
	return false
}

// upgrade takes the connection over from net/http and writes the 101
// response with first (a complete frame) in the same write. It returns the
// connection and whatever the client sent after its request.
func upgrade(w http.ResponseWriter, accept string, first []byte, timeout time.Duration) (net.Conn, []byte, error) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		// HTTP/2, or a wrapper that hides the connection.
		writeError(w, http.StatusBadRequest, 3, "Bad request")
		return nil, nil, errors.New("response writer cannot be hijacked")
	}
	nc, brw, err := hj.Hijack()
	if err != nil {
		return nil, nil, fmt.Errorf("hijack: %w", err)
	}
	var early []byte
	if n := brw.Reader.Buffered(); n > 0 {
		early, _ = brw.Reader.Peek(n)
		early = bytes.Clone(early)
	}
	b := make([]byte, 0, 160+len(first))
	b = append(b, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "...)
	b = append(b, accept...)
	b = append(b, "\r\n\r\n"...)
	b = append(b, first...)
	// Deadlines net/http set are cleared; the handshake write has its own.
	_ = nc.SetDeadline(time.Time{})
	_ = nc.SetWriteDeadline(time.Now().Add(timeout))
	if _, err := nc.Write(b); err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("handshake response: %w", err)
	}
	_ = nc.SetWriteDeadline(time.Time{})
	return nc, early, nil
}

// frameBytes is a whole server frame: header and payload.
func frameBytes(op byte, payload []byte) []byte {
	b := appendHeader(make([]byte, 0, headerLen(len(payload))+len(payload)), op, len(payload))
	return append(b, payload...)
}

// WebSocket opcodes the reader meets besides those the writer sends.
const (
	opContinuation = 0x0
	opPing         = 0x9
	opPong         = 0xA
)

// Reader errors: each ends the connection after the close frame it names.
var (
	errTooBig       = errors.New("message over maxPayload")
	errStopReading  = errors.New("stop reading")
	errPeerClosed   = errors.New("close frame received")
	errProtocolBase = errors.New("websocket protocol error")
)

func protocolErr(msg string) error { return fmt.Errorf("%w: %s", errProtocolBase, msg) }

// readChunk is the size of a pooled read buffer: a connection's waiting
// frames are read in one call.
const readChunk = 16 << 10

var readPool = sync.Pool{New: func() any { b := make([]byte, readChunk); return &b }}

// readState is the reader goroutine's own: touched by it alone.
type readState struct {
	in    []byte // the unfinished tail of what was read; nil when none
	need  int    // bytes the frame in progress needs in all, when known
	msg   []byte // a fragmented message being assembled
	msgOp byte   // its opcode; 0 when none is in progress

	// Where the next read lands: into tail when set, else into a pooled
	// buffer taken only once the socket is readable (pooled, then).
	tail   []byte
	pooled *[]byte
	// rawRead is the read step given to the descriptor, made once per
	// connection so that a read allocates nothing; n and err are what
	// its last call read.
	rawRead func(fd uintptr) bool
	n       int
	err     error
}

// buf is the buffer the next read goes into.
func (st *readState) buf() []byte {
	if st.tail != nil {
		return st.tail
	}
	if st.pooled == nil {
		st.pooled = readPool.Get().(*[]byte)
	}
	return *st.pooled
}

// release gives a pooled buffer back.
func (st *readState) release() {
	if st.pooled != nil {
		readPool.Put(st.pooled)
		st.pooled = nil
	}
}

// read is the connection's reader goroutine: it hands each message to
// the handler, in order, until the connection fails or closes.
func (c *Conn) read(early []byte) {
	s := c.srv
	defer s.wg.Done()
	defer c.finish()
	st := &readState{}
	if len(early) > 0 {
		st.in = early
		if err := c.frames(st, early); err != nil {
			c.readError(err)
			return
		}
	}
	for {
		var err error
		if len(st.in) == 0 {
			err = c.readPooled(st)
		} else {
			err = c.readMore(st)
		}
		if err != nil {
			c.readError(err)
			return
		}
		if c.closed.Load() {
			return
		}
	}
}

// readPooled reads into a pooled buffer taken only once the socket is
// readable, and keeps the unfinished tail, if any.
func (c *Conn) readPooled(st *readState) error {
	st.tail = nil
	n, err := c.readInto(st)
	defer st.release()
	if err != nil || st.pooled == nil {
		return err
	}
	return c.frames(st, (*st.pooled)[:n])
}

// readMore reads after an unfinished frame, into a buffer that grows
// towards that frame's size as its bytes arrive.
func (c *Conn) readMore(st *readState) error {
	st.in = growFor(st.in, st.need)
	st.tail = st.in[len(st.in):cap(st.in)]
	n, err := c.readInto(st)
	st.tail = nil
	if err != nil {
		return err
	}
	return c.frames(st, st.in[:len(st.in)+n])
}

// growFor returns in with room to read more of a frame of need bytes
// (0: not known yet): at least readChunk, and at most double what has
// arrived, so a header that announces a large frame costs memory only as
// the frame's bytes come — fourteen bytes cannot pin a megabyte.
func growFor(in []byte, need int) []byte {
	want := len(in) + readChunk
	if need > want {
		want = min(need, max(want, 2*len(in)))
	}
	if cap(in) >= want {
		return in
	}
	out := make([]byte, len(in), want)
	copy(out, in)
	return out
}

// frames handles every complete frame in data and keeps the rest in
// st.in for the next read.
func (c *Conn) frames(st *readState, data []byte) error {
	for len(data) > 0 {
		h, ok, err := parseHeader(data, c.srv.cfg.MaxPayload)
		if err != nil {
			return err
		}
		if !ok {
			st.need = 0
			break
		}
		if h.op == opContinuation && int64(len(st.msg))+int64(h.n) > c.srv.cfg.MaxPayload {
			// The message as a whole is over the limit; a control frame
			// between its fragments does not count towards it.
			return errTooBig
		}
		total := h.hdr + h.n
		if len(data) < total {
			st.need = total
			break
		}
		payload := make([]byte, h.n)
		maskCopy(payload, data[h.hdr:total], h.key)
		data = data[total:]
		if err := c.frame(st, h, payload); err != nil {
			return err
		}
		if c.closed.Load() {
			return errStopReading
		}
	}
	switch {
	case len(data) == 0:
		st.in, st.need = nil, 0
	case len(st.in) > 0 && &st.in[0] == &data[0]:
		// Already at the front of the connection's own buffer.
		st.in = data
	case cap(st.in) >= len(data) && len(st.in) > 0:
		st.in = st.in[:copy(st.in[:cap(st.in)], data)]
	default:
		st.in = bytes.Clone(data)
	}
	return nil
}

// frameHeader is a parsed client frame header.
type frameHeader struct {
	fin bool
	op  byte
	hdr int // header bytes, mask key included
	n   int // payload bytes
	key [4]byte
}

// parseHeader parses the frame header at the start of b; ok is false when
// b does not hold all of it yet. A payload over limit is errTooBig, judged
// on the 64-bit length before it becomes an int (32 bits on some builds).
func parseHeader(b []byte, limit int64) (h frameHeader, ok bool, err error) {
	if len(b) < 2 {
		return h, false, nil
	}
	h.fin = b[0]&0x80 != 0
	h.op = b[0] & 0x0f
	if b[0]&0x70 != 0 {
		return h, false, protocolErr("reserved bits set")
	}
	if b[1]&0x80 == 0 {
		return h, false, protocolErr("client frame not masked")
	}
	n := int64(b[1] & 0x7f)
	h.hdr = 2
	switch n {
	case 126:
		if len(b) < 4 {
			return h, false, nil
		}
		n, h.hdr = int64(binary.BigEndian.Uint16(b[2:])), 4
	case 127:
		if len(b) < 10 {
			return h, false, nil
		}
		u := binary.BigEndian.Uint64(b[2:])
		if u > 1<<62 {
			return h, false, protocolErr("frame length out of range")
		}
		n, h.hdr = int64(u), 10
	}
	if len(b) < h.hdr+4 {
		return h, false, nil
	}
	copy(h.key[:], b[h.hdr:])
	h.hdr += 4
	switch h.op {
	case opText, opBinary, opContinuation:
	case opClose, opPing, opPong:
		if n > 125 || !h.fin {
			return h, false, protocolErr("bad control frame")
		}
	default:
		return h, false, protocolErr(fmt.Sprintf("unknown opcode %d", h.op))
	}
	if n > limit || n > math.MaxInt32 {
		return h, false, errTooBig
	}
	h.n = int(n)
	return h, true, nil
}

// maskCopy copies src to dst, unmasking it with key.
func maskCopy(dst, src []byte, key [4]byte) {
	k := binary.LittleEndian.Uint32(key[:])
	k64 := uint64(k) | uint64(k)<<32
	i := 0
	for ; i+8 <= len(src); i += 8 {
		binary.LittleEndian.PutUint64(dst[i:], binary.LittleEndian.Uint64(src[i:])^k64)
	}
	for ; i < len(src); i++ {
		dst[i] = src[i] ^ key[i&3]
	}
}

// frame acts on one complete, unmasked frame.
func (c *Conn) frame(st *readState, h frameHeader, payload []byte) error {
	switch h.op {
	case opPing:
		c.enqueue(opPong, payload)
		return nil
	case opPong:
		return nil
	case opClose:
		reply := websocket.CloseNormalClosure // to a close with no code
		switch {
		case len(payload) == 1:
			return protocolErr("close frame of one byte")
		case len(payload) >= 2:
			code := int(binary.BigEndian.Uint16(payload))
			if !validCloseCode(code) {
				return protocolErr(fmt.Sprintf("close code %d", code))
			}
			reply = code
		}
		c.enqueue(opClose, websocket.FormatCloseMessage(reply, ""))
		return errPeerClosed
	case opContinuation:
		if st.msgOp == 0 {
			return protocolErr("continuation without a message")
		}
		st.msg = append(st.msg, payload...)
		if !h.fin {
			return nil
		}
		op, msg := st.msgOp, st.msg
		st.msg, st.msgOp = nil, 0
		c.deliver(op, msg)
		return nil
	}
	if st.msgOp != 0 {
		return protocolErr("new message inside a fragmented one")
	}
	if !h.fin {
		st.msg, st.msgOp = payload, h.op
		return nil
	}
	c.deliver(h.op, payload)
	return nil
}

// validCloseCode reports whether a peer may send code in a close frame
// (RFC 6455 §7.4 and the IANA registry): 1005, 1006 and 1015 are for
// reporting only, the rest below 3000 unassigned, 5000 and up invalid.
func validCloseCode(code int) bool {
	switch {
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1014:
		return true
	default:
		return code >= 3000 && code <= 4999
	}
}

func (c *Conn) deliver(op byte, msg []byte) {
	if op == opBinary {
		c.srv.h.Binary(c, msg)
		return
	}
	c.srv.onMessage(c, msg)
}

// readError records why reading ended, and tells the peer with a close
// frame where the reader found the fault.
func (c *Conn) readError(err error) {
	switch {
	case errors.Is(err, errStopReading):
	case errors.Is(err, errTooBig):
		if c.setReason(ReasonPayloadTooBig) {
			c.srv.stats.Oversized.Add(1)
		}
		c.enqueue(opClose, websocket.FormatCloseMessage(websocket.CloseMessageTooBig, "message too big"))
	case errors.Is(err, errProtocolBase):
		c.srv.stats.BadFrames.Add(1)
		c.setReason(ReasonTransportError)
		text := err.Error()
		if len(text) > 120 {
			text = text[:120]
		}
		c.enqueue(opClose, websocket.FormatCloseMessage(websocket.CloseProtocolError, text))
	case errors.Is(err, errPeerClosed):
		c.setReason(ReasonTransportClose)
	case errors.Is(err, io.EOF):
		c.setReason(ReasonTransportClose)
	default:
		c.setReason(ReasonTransportError)
	}
}

// readPlain reads with the connection's blocking Read, for connections
// without a raw descriptor.
func (c *Conn) readPlain(st *readState) (int, error) {
	n, err := c.nc.Read(st.buf())
	if n > 0 {
		return n, nil
	}
	if err == nil {
		err = io.EOF
	}
	return 0, err
}
