// Package engineio is the Engine.IO v4 transport layer of the hub: it
// upgrades HTTP requests to WebSocket connections (RFC 6455, its own
// handshake, frame reader and writer), performs the Engine.IO handshake,
// runs the ping/pong heartbeat, enforces maxPayload and a bounded send
// queue per connection, and hands message payloads to a [Handler].
//
// A connection costs one goroutine, its reader, which waits for the socket
// with no buffer held (a pooled one is taken for each read). Frames sent to
// it are queued and written by the server's write loops (one per
// processor, each running only while it has work): a loop gives every
// connection with frames waiting one non-blocking write(2) of everything
// queued — the WebSocket frames of many Engine.IO packets at once —
// straight to the TCP connection. Only a connection whose socket is full
// gets a writer goroutine of its own until it drains. A broadcast's frame
// is shared by every connection it goes to, and a broadcast to thousands
// of sockets starts no goroutine per socket.
//
// Concurrency: a Handler's Message and Binary methods are called from the
// connection's single reader goroutine, in order. [Conn.Send] may be called
// from any goroutine and never blocks: a connection whose queue is full is
// closed as a slow consumer.
package engineio

import (
	"bytes"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
	"github.com/rs/zerolog"

	"github.com/medianest/hub/hub/protocol"
)

// Close reasons reported to [Handler.Close].
const (
	ReasonTransportClose = "transport close"
	ReasonTransportError = "transport error"
	ReasonPingTimeout    = "ping timeout"
	ReasonParseError     = "parse error"
	ReasonSlowConsumer   = "slow consumer"
	ReasonPayloadTooBig  = "payload too large"
	ReasonServerClose    = "server close"
	ReasonShutdown       = "server shutting down"
)

// Config configures a [Server]. Zero values take the documented defaults.
type Config struct {
	// PingInterval is the time between server pings; default 25s.
	PingInterval time.Duration
	// PingTimeout is how long to wait for a pong; default 20s.
	PingTimeout time.Duration
	// MaxPayload is the largest frame accepted, in bytes; default 1,000,000.
	MaxPayload int64
	// SendQueue is the number of frames that may wait to be written to one
	// connection before it is closed as a slow consumer; default 128.
	SendQueue int
	// WriteTimeout bounds one write to a connection; default 10s.
	WriteTimeout time.Duration
	// WriteDelay, when positive, is how long a write loop lets frames
	// gather after a busy round — one that wrote to busyRound connections
	// or more that had frames a moment before as well, a room fed at a
	// steady rate — before it writes again: one system call per
	// connection per interval under load instead of one per frame, for up
	// to that much more latency (Centrifugo's write_delay, applied only
	// under load). A loop that was not busy writes at once, so a quiet hub
	// adds no latency. 0 turns it off.
	WriteDelay time.Duration
}

func (c *Config) setDefaults() {
	if c.PingInterval <= 0 {
		c.PingInterval = 25 * time.Second
	}
	if c.PingTimeout <= 0 {
		c.PingTimeout = 20 * time.Second
	}
	if c.MaxPayload <= 0 {
		c.MaxPayload = 1_000_000
	}
	if c.SendQueue <= 0 {
		c.SendQueue = 128
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 10 * time.Second
	}
}

// Handler receives the events of Engine.IO connections.
type Handler interface {
	// Open is called once the handshake is sent, before any message. r is
	// the upgrade request.
	Open(c *Conn, r *http.Request)
	// Message is called with the payload of each text message packet.
	Message(c *Conn, data []byte)
	// Binary is called with each binary message.
	Binary(c *Conn, data []byte)
	// Close is called once when the connection is gone.
	Close(c *Conn, reason string)
}

// Stats counts what the transport refused or lost. Fields are read with
// their Load methods.
type Stats struct {
	Open          atomic.Int64
	Opened        atomic.Uint64
	Oversized     atomic.Uint64
	SlowConsumers atomic.Uint64
	BadFrames     atomic.Uint64
	PingTimeouts  atomic.Uint64
}

// Server is an Engine.IO server for the WebSocket transport.
type Server struct {
	cfg     Config
	h       Handler
	log     zerolog.Logger
	stats   Stats
	closing atomic.Bool
	conns   sync.Map // *Conn -> struct{}
	wg      sync.WaitGroup

	loops []*writeLoop // one per processor; a connection keeps its loop
	next  atomic.Uint32
}

// NewServer returns a Server that hands connections to h.
func NewServer(cfg Config, h Handler, log zerolog.Logger) *Server {
	cfg.setDefaults()
	s := &Server{cfg: cfg, h: h, log: log}
	for range runtime.GOMAXPROCS(0) {
		s.loops = append(s.loops, &writeLoop{delay: cfg.WriteDelay, wake: make(chan struct{}, 1), stopping: &s.closing})
	}
	return s
}

// Config returns the effective configuration.
func (s *Server) Config() Config { return s.cfg }

// Stats returns the server's counters.
func (s *Server) Stats() *Stats { return &s.stats }

// errorBody is Engine.IO's JSON error body for refused HTTP requests.
type errorBody struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

func writeError(w http.ResponseWriter, status, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(errorBody{Code: code, Message: msg})
}

// ServeHTTP accepts Engine.IO v4 WebSocket connections. It returns once
// the connection is upgraded and opened: net/http's per-connection state
// (its buffers, its goroutine) is freed then, and the connection lives on
// its reader goroutine.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// Counted before the closing check, so Shutdown waits for every
	// connection that got past it.
	s.wg.Add(1)
	defer s.wg.Done()
	q := r.URL.Query()
	switch {
	case s.closing.Load():
		writeError(w, http.StatusServiceUnavailable, 4, "Server shutting down")
		return
	case q.Get("EIO") != "4":
		writeError(w, http.StatusBadRequest, 5, "Unsupported protocol version")
		return
	case q.Get("transport") != "websocket":
		writeError(w, http.StatusBadRequest, 0, "Transport unknown")
		return
	case q.Get("sid") != "":
		// An upgrade from long-polling: this server has no polling sessions.
		writeError(w, http.StatusBadRequest, 1, "Session ID unknown")
		return
	case r.Method != http.MethodGet:
		writeError(w, http.StatusBadRequest, 2, "Bad handshake method")
		return
	}
	accept, err := checkUpgrade(r)
	if err != nil {
		s.log.Debug().Err(err).Msg("websocket handshake refused")
		writeError(w, http.StatusBadRequest, 3, "Bad request")
		return
	}
	id := newSID()
	nc, early, err := upgrade(w, accept, frameBytes(opText, protocol.OpenPacket(id, s.cfg.PingInterval, s.cfg.PingTimeout, s.cfg.MaxPayload)), s.cfg.WriteTimeout)
	if err != nil {
		s.log.Debug().Err(err).Msg("websocket upgrade failed")
		return
	}
	c := &Conn{id: id, srv: s, nc: nc}
	c.loop = s.loops[int(s.next.Add(1))%len(s.loops)]
	if sc, ok := nc.(syscall.Conn); ok && canRaw {
		if raw, err := sc.SyscallConn(); err == nil {
			c.raw = raw
		}
	}
	s.conns.Store(c, struct{}{})
	s.stats.Open.Add(1)
	s.stats.Opened.Add(1)
	s.wg.Add(1)
	s.h.Open(c, r)
	c.mu.Lock()
	c.timer = time.AfterFunc(s.cfg.PingInterval, c.heartbeat)
	c.mu.Unlock()
	go c.read(early)
}

// finish ends a connection whose reader has stopped: the handler hears
// of it once, and the TCP connection is closed once the writer has
// written what it holds (a close frame, say).
func (c *Conn) finish() {
	s := c.srv
	c.closed.Store(true)
	c.mu.Lock()
	if c.timer != nil {
		c.timer.Stop()
	}
	c.mu.Unlock()
	c.setReason(ReasonTransportClose)
	s.conns.Delete(c)
	s.stats.Open.Add(-1)
	s.h.Close(c, c.reason())
	c.wmu.Lock()
	if !c.closing {
		// Nobody will read these; a close frame, and what precedes it,
		// is still written.
		c.queue, c.spare = nil, nil
	}
	c.done = true
	writing := c.writing
	c.wmu.Unlock()
	if !writing {
		_ = c.nc.Close()
	}
}

func (s *Server) onMessage(c *Conn, frame []byte) {
	typ, payload, err := protocol.DecodeEIO(frame)
	if err != nil {
		s.stats.BadFrames.Add(1)
		c.CloseWithError(websocket.CloseUnsupportedData, ReasonParseError, err.Error())
		return
	}
	switch typ {
	case protocol.EIOMessage:
		s.h.Message(c, payload)
	case protocol.EIOPong:
		c.mu.Lock()
		if c.awaitingPong {
			c.awaitingPong = false
			if c.timer != nil {
				c.timer.Reset(s.cfg.PingInterval)
			}
		}
		c.mu.Unlock()
	case protocol.EIOClose:
		c.Close(ReasonTransportClose)
	case protocol.EIOPing, protocol.EIONoop:
		// Clients do not ping in v4; tolerate it.
	default:
		s.stats.BadFrames.Add(1)
		c.CloseWithError(websocket.CloseUnsupportedData, ReasonParseError, "unexpected engine.io packet "+string(rune(typ)))
	}
}

// Len returns the number of open connections.
func (s *Server) Len() int { return int(s.stats.Open.Load()) }

// Shutdown stops accepting connections, closes every open one with a
// "going away" close frame (clients reconnect elsewhere), and waits until
// they are gone or ctx is done, when the rest are cut.
func (s *Server) Shutdown(ctxDone <-chan struct{}) {
	s.closing.Store(true)
	for _, w := range s.loops {
		w.nudge() // a loop gathering frames writes the close frames at once
	}
	s.conns.Range(func(k, _ any) bool {
		k.(*Conn).CloseWithError(websocket.CloseGoingAway, ReasonShutdown, ReasonShutdown)
		return true
	})
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctxDone:
		s.conns.Range(func(k, _ any) bool { k.(*Conn).kill(); return true })
		<-done
	}
}

// outFrame is one WebSocket frame waiting to be written.
type outFrame struct {
	op   byte // WebSocket opcode
	data []byte
}

// WebSocket opcodes the writer sends.
const (
	opText   = 0x1
	opBinary = 0x2
	opClose  = 0x8
)

// Conn is one Engine.IO connection.
type Conn struct {
	id  string
	srv *Server
	nc  net.Conn
	raw syscall.RawConn // nc's descriptor, for writes that must not wait; nil if it has none

	closed atomic.Bool

	// The send queue. While writing is true the connection has a writer:
	// a turn in its write loop, or its own goroutine when the socket is
	// full. The writer swaps queue for spare and writes what it took, so
	// senders never wait for the network.
	loop    *writeLoop
	wmu     sync.Mutex
	queue   []outFrame
	spare   []outFrame
	writing bool
	closing bool // a close frame is queued: nothing more is accepted
	done    bool // the reader has finished: the writer closes the TCP connection

	lastTurn int64 // when its loop's round last wrote to it (Unix ns); the loop's alone

	// sink, when set, replaces the network (NewDetachedConn).
	sink func(frame []byte) bool

	mu           sync.Mutex
	timer        *time.Timer
	awaitingPong bool
	why          string

	// Data is the upper layer's state; set it in Handler.Open.
	Data any
}

// ID is the Engine.IO session id.
func (c *Conn) ID() string { return c.id }

// NewDetachedConn returns a connection without a network behind it whose
// frames go to sink. It exists for tests and benchmarks of the layers
// above (a broadcast to 10,000 sockets without 10,000 sockets).
func NewDetachedConn(sink func(frame []byte) bool) *Conn {
	return &Conn{id: newSID(), sink: sink}
}

// RemoteAddr is the TCP peer address.
func (c *Conn) RemoteAddr() net.Addr {
	if c.nc == nil {
		return nil
	}
	return c.nc.RemoteAddr()
}

// Send queues a complete Engine.IO text frame. It never blocks; it returns
// false when the connection is closed or its queue overflowed, in which
// case the connection is being closed as a slow consumer. The frame must
// not be modified afterwards: it may be shared with other connections.
func (c *Conn) Send(frame []byte) bool {
	if c.sink != nil {
		return c.sink(frame)
	}
	return c.enqueue(opText, frame)
}

// SendBinary queues a binary frame.
func (c *Conn) SendBinary(frame []byte) bool {
	if c.sink != nil {
		return false
	}
	return c.enqueue(opBinary, frame)
}

// keepQueue is the queue capacity a connection keeps between bursts; a
// larger one, grown by a burst, is let go so idle connections stay small.
const keepQueue = 8

func (c *Conn) enqueue(op byte, data []byte) bool {
	if c.closed.Load() {
		return false
	}
	c.wmu.Lock()
	if c.closing || c.done {
		c.wmu.Unlock()
		return false
	}
	if len(c.queue) >= c.srv.cfg.SendQueue {
		c.wmu.Unlock()
		if c.setReason(ReasonSlowConsumer) {
			c.srv.stats.SlowConsumers.Add(1)
		}
		c.kill()
		return false
	}
	c.queue = append(c.queue, outFrame{op, data})
	if op == opClose {
		c.closing = true
	}
	start := !c.writing
	c.writing = true
	half := len(c.queue) == max(c.srv.cfg.SendQueue/2, 1)
	c.wmu.Unlock()
	if start {
		c.loop.push(c)
	}
	if half && c.loop.delay > 0 {
		c.loop.nudge() // its loop may be gathering frames: it writes now instead
	}
	return true
}

// flush is the write loop's turn at c: it takes everything queued and
// writes it in one non-blocking system call. What the socket does not
// take at once — a slow or stalled peer — goes to a goroutine of c's own
// that waits for the socket, so one stalled connection never holds up
// the others of its loop.
func (c *Conn) flush(w *writeLoop) {
	if w.delay > 0 {
		if c.lastTurn != 0 && w.now-c.lastTurn <= 2*int64(w.delay) {
			w.repeats++ // written to a moment ago too: a busy connection
		}
		c.lastTurn = w.now
	}
	c.wmu.Lock()
	q := c.queue
	if len(q) == 0 {
		c.idleLocked()
		return
	}
	c.queue, c.spare = c.spare[:0], nil
	c.wmu.Unlock()

	size := 0
	for _, f := range q {
		size += headerLen(len(f.data)) + len(f.data)
	}
	if c.raw == nil || size > maxLoopWrite {
		// Large frames go straight from their buffers (writev), not
		// through a copy into the loop's.
		go c.write(nil, false, q)
		return
	}
	buf, closing := w.buf[:0], false
	for _, f := range q {
		buf = appendHeader(buf, f.op, len(f.data))
		buf = append(buf, f.data...)
		closing = closing || f.op == opClose
	}
	w.buf = buf
	c.recycle(q)
	n, err := c.tryWrite(buf)
	if err != nil {
		c.writeFailed(err)
		return
	}
	if n < len(buf) {
		go c.write(bytes.Clone(buf[n:]), closing, nil)
		return
	}
	if closing {
		c.closeWrite()
	}
	c.wmu.Lock()
	if len(c.queue) == 0 {
		// (A finished connection keeps only a close frame queued, which
		// is still written.)
		c.idleLocked()
		return
	}
	c.wmu.Unlock()
	// More arrived while we wrote: its turn comes in the next round.
	w.push(c)
}

// maxLoopWrite is the most a write loop copies into its buffer for one
// connection's turn; a larger turn is written by a goroutine of the
// connection's own, straight from the frames.
const maxLoopWrite = 64 << 10

// idleLocked ends a writer's turn with nothing queued; it is called with
// c.wmu held and releases it. A connection whose reader has finished is
// closed now that nothing more will be written.
func (c *Conn) idleLocked() {
	c.writing = false
	// Let go of what a burst grew.
	if cap(c.queue) > keepQueue {
		c.queue = nil
	}
	if cap(c.spare) > keepQueue {
		c.spare = nil
	}
	done := c.done
	c.wmu.Unlock()
	if done {
		_ = c.nc.Close()
	}
}

// recycle hands a written queue back as the next spare.
func (c *Conn) recycle(q []outFrame) {
	clear(q)
	c.wmu.Lock()
	if !c.done && c.spare == nil {
		c.spare = q[:0]
	}
	c.wmu.Unlock()
}

// writeFailed ends a connection whose socket refused a write.
func (c *Conn) writeFailed(err error) {
	c.wmu.Lock()
	c.writing = false
	c.queue = nil
	c.wmu.Unlock()
	if c.setReason(ReasonTransportError) && !errors.Is(err, net.ErrClosed) {
		c.srv.log.Debug().Err(err).Msg("write failed")
	}
	c.kill()
}

// closeWrite follows a written close frame: nothing follows it, so our
// half of the TCP connection ends, and the peer has a moment to answer
// before the reader gives up on it.
func (c *Conn) closeWrite() {
	if cw, ok := c.nc.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	_ = c.nc.SetReadDeadline(time.Now().Add(closeGrace))
}

// write is a connection's own writer goroutine, for what its write loop
// could not write at once: pending (the unwritten rest of a turn, which
// ends in a close frame when closing is set), then first, then whatever
// is queued, blocking on the socket with the write timeout, until the
// queue is empty.
func (c *Conn) write(pending []byte, closing bool, first []outFrame) {
	var (
		hdrs []byte // the round's frame headers, back to back
		bufs net.Buffers
	)
	q := first
	for {
		if len(pending) == 0 && len(q) == 0 {
			c.wmu.Lock()
			q = c.queue
			if len(q) == 0 {
				c.idleLocked()
				return
			}
			c.queue, c.spare = c.spare[:0], nil
			c.wmu.Unlock()
		}
		hdrs, bufs = hdrs[:0], bufs[:0]
		if len(pending) > 0 {
			bufs = append(bufs, pending)
			pending = nil
		}
		for _, f := range q {
			hdrs = appendHeader(hdrs, f.op, len(f.data))
		}
		off := 0
		for _, f := range q {
			n := headerLen(len(f.data))
			bufs = append(bufs, hdrs[off:off+n:off+n], f.data)
			off += n
			closing = closing || f.op == opClose
		}
		_ = c.nc.SetWriteDeadline(time.Now().Add(c.srv.cfg.WriteTimeout))
		_, err := bufs.WriteTo(c.nc) // writev(2)
		// The deadline bounds this write only: left set, it would fail
		// the write loop's next non-blocking write once it passed.
		_ = c.nc.SetWriteDeadline(time.Time{})
		if q != nil {
			c.recycle(q)
			q = nil
		}
		if err != nil {
			c.writeFailed(err)
			return
		}
		if closing {
			c.closeWrite()
			closing = false
		}
	}
}

// writeLoop writes the queued frames of a share of the server's
// connections, one non-blocking system call per connection per round. It
// runs on a goroutine only while some connection of its share has frames
// waiting: a broadcast to thousands of sockets costs the loops' goroutines,
// not one per socket, and a busy connection's frames gather while the
// loop serves the others, so they go out together.
type writeLoop struct {
	delay    time.Duration
	stopping *atomic.Bool // the server is shutting down: no more pauses

	// wake ends a pause early: a connection's queue is half full, and
	// waiting longer could cut a client that reads fast as a slow one.
	wake    chan struct{}
	timer   *time.Timer                       // the pauses'; used by the loop alone
	observe func(d time.Duration, woken bool) // a test's view of each pause

	mu      sync.Mutex
	dirty   []*Conn // connections with frames waiting, in the order they got them
	spare   []*Conn
	running bool

	buf []byte // one connection's turn, frames back to back; used by the loop alone

	// now is when this round began (Unix ns); repeats counts its
	// connections that a round had written to within two delays before.
	// Used by the loop alone, and only with a delay.
	now     int64
	repeats int
}

// push gives c a turn in the loop's next round.
func (w *writeLoop) push(c *Conn) {
	w.mu.Lock()
	w.dirty = append(w.dirty, c)
	start := !w.running
	w.running = true
	w.mu.Unlock()
	if start {
		go w.run()
	}
}

func (w *writeLoop) run() {
	var wait time.Duration
	for {
		if wait > 0 && !w.stopping.Load() {
			// The last round was busy: let frames gather, so the next
			// writes several per connection.
			w.pause(wait)
		}
		w.mu.Lock()
		round := w.dirty
		if len(round) == 0 {
			w.running = false
			if cap(w.buf) > maxLoopWrite*2 {
				w.buf = nil
			}
			w.mu.Unlock()
			return
		}
		w.dirty, w.spare = w.spare[:0], nil
		w.mu.Unlock()
		var began time.Time
		if w.delay > 0 {
			began = time.Now()
			w.now, w.repeats = began.UnixNano(), 0
		}
		for _, c := range round {
			c.flush(w)
		}
		wait = 0
		if w.delay > 0 && w.repeats >= busyRound {
			// Rounds start at most once per delay; a round that took
			// longer is followed at once.
			wait = w.delay - time.Since(began)
		}
		clear(round)
		w.mu.Lock()
		w.spare = round[:0]
		w.mu.Unlock()
	}
}

// nudge ends the loop's pause, or the next one if it is not pausing.
func (w *writeLoop) nudge() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// pause waits d, or less if a connection's queue fills to half meanwhile.
func (w *writeLoop) pause(d time.Duration) {
	if w.timer == nil {
		w.timer = time.NewTimer(d)
	} else {
		w.timer.Reset(d)
	}
	woken := false
	select {
	case <-w.timer.C:
	case <-w.wake:
		w.timer.Stop()
		woken = true
	}
	if w.observe != nil {
		w.observe(d, woken)
	}
}

// busyRound is the number of connections in a round, each written to
// within two delays before, from which a write loop counts as busy and
// lets frames gather for the write delay: that many system calls are
// ≈ 0.25 ms of a core over loopback, where gathering starts to pay for
// the latency it adds. Only connections that come back count: a room fed
// at a steady rate does, a burst of new connections (each with its
// CONNECT reply) does not, and gathering would only slow the latter down.
const busyRound = 64

// closeGrace is how long the peer has to answer a close frame.
const closeGrace = time.Second

// headerLen is the size of a server frame's header for a payload of n bytes.
func headerLen(n int) int {
	switch {
	case n < 126:
		return 2
	case n <= 0xffff:
		return 4
	}
	return 10
}

// appendHeader appends the header of a final, unmasked server frame
// (RFC 6455 §5.2).
func appendHeader(b []byte, op byte, n int) []byte {
	b = append(b, 0x80|op)
	switch {
	case n < 126:
		return append(b, byte(n))
	case n <= 0xffff:
		return append(b, 126, byte(n>>8), byte(n))
	}
	u := uint64(n) // n is 32 bits on some builds
	return append(b, 127, byte(u>>56), byte(u>>48), byte(u>>40), byte(u>>32), byte(u>>24), byte(u>>16), byte(u>>8), byte(u))
}

// Close closes the connection after the frames already queued are written.
func (c *Conn) Close(reason string) {
	c.CloseWithError(websocket.CloseNormalClosure, reason, "")
}

// CloseWithError closes the connection with a WebSocket close code and text
// after the frames already queued, and cuts it if that has not happened
// within the write timeout.
func (c *Conn) CloseWithError(code int, reason, text string) {
	c.setReason(reason)
	if c.nc == nil || c.closed.Load() {
		return
	}
	if len(text) > 120 {
		text = text[:120]
	}
	if !c.enqueue(opClose, websocket.FormatCloseMessage(code, text)) {
		return
	}
	// The peer answers the close frame and the reader then ends the
	// connection; cut it if that has not happened in time.
	time.AfterFunc(c.srv.cfg.WriteTimeout, c.kill)
}

// kill cuts the TCP connection at once; the reader then ends the session.
func (c *Conn) kill() {
	c.closed.Store(true)
	if c.nc != nil {
		_ = c.nc.Close()
	}
}

func (c *Conn) setReason(r string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.why != "" {
		return false
	}
	c.why = r
	return true
}

func (c *Conn) reason() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.why
}

// heartbeat runs on the connection's timer: it sends a ping, or closes a
// connection whose last ping went unanswered.
func (c *Conn) heartbeat() {
	if c.closed.Load() {
		return
	}
	c.mu.Lock()
	if c.awaitingPong {
		c.mu.Unlock()
		c.srv.stats.PingTimeouts.Add(1)
		c.setReason(ReasonPingTimeout)
		c.kill()
		return
	}
	c.awaitingPong = true
	c.timer.Reset(c.srv.cfg.PingTimeout)
	c.mu.Unlock()
	c.Send(pingFrame)
}

var pingFrame = []byte{byte(protocol.EIOPing)}
