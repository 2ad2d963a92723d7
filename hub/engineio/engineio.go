// Package engineio is the Engine.IO v4 transport layer of the hub: it
// upgrades HTTP requests to WebSocket sessions (on melody), performs the
// Engine.IO handshake, runs the ping/pong heartbeat, enforces maxPayload and
// a bounded send queue per connection, and hands message payloads to a
// [Handler].
//
// Concurrency: a Handler's Message and Binary methods are called from the
// connection's single reader goroutine, in order. [Conn.Send] may be called
// from any goroutine and never blocks: a connection whose queue is full is
// closed as a slow consumer.
package engineio

import (
	"bufio"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/olahol/melody"
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
	cfg      Config
	h        Handler
	m        *melody.Melody
	log      zerolog.Logger
	stats    Stats
	closing  atomic.Bool
	conns    sync.Map // *Conn -> struct{}
	wg       sync.WaitGroup
	closeOne sync.Once
}

// NewServer returns a Server that hands connections to h.
func NewServer(cfg Config, h Handler, log zerolog.Logger) *Server {
	cfg.setDefaults()
	m := melody.New()
	m.Config.MaxMessageSize = cfg.MaxPayload
	m.Config.MessageBufferSize = cfg.SendQueue
	m.Config.WriteWait = cfg.WriteTimeout
	// WebSocket-level pings keep NATs and proxies warm and detect dead TCP
	// peers; the Engine.IO heartbeat below is what clients check.
	m.Config.PingPeriod = cfg.PingInterval
	m.Config.PongWait = cfg.PingInterval + cfg.PingTimeout + cfg.WriteTimeout
	// The Socket.io layer checks Origin and answers with a readable
	// connect_error; refusing the upgrade would leave the client guessing.
	m.Upgrader.CheckOrigin = func(*http.Request) bool { return true }
	m.Upgrader.ReadBufferSize = 1024
	m.Upgrader.WriteBufferSize = 1024
	m.Upgrader.WriteBufferPool = &sync.Pool{}

	s := &Server{cfg: cfg, h: h, m: m, log: log}
	m.HandleConnect(s.onConnect)
	m.HandleMessage(s.onMessage)
	m.HandleMessageBinary(s.onBinary)
	m.HandleError(s.onError)
	m.HandleDisconnect(s.onDisconnect)
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

// ServeHTTP accepts Engine.IO v4 WebSocket connections.
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
	case !websocket.IsWebSocketUpgrade(r):
		writeError(w, http.StatusBadRequest, 3, "Bad request")
		return
	}
	c := &Conn{id: newSID(), srv: s}
	hw := &hijackRecorder{ResponseWriter: w, conn: c, upgraded: make(chan struct{})}
	c.req = r
	// The session runs on a goroutine of its own, and this handler returns
	// as soon as the connection is hijacked: net/http's per-connection
	// state (its buffers, its goroutine's stack) is then freed instead of
	// living as long as the WebSocket.
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		err := s.m.HandleRequestWithKeys(hw, r, map[string]any{connKey: c})
		hw.release() // a failed upgrade has written its response by now
		if err != nil && !errors.Is(err, melody.ErrClosed) {
			s.log.Debug().Err(err).Msg("websocket upgrade failed")
		}
	}()
	<-hw.upgraded
}

const connKey = "eio"

func connOf(sess *melody.Session) *Conn {
	v, _ := sess.Get(connKey)
	c, _ := v.(*Conn)
	return c
}

func (s *Server) onConnect(sess *melody.Session) {
	c := connOf(sess)
	c.sess = sess
	s.conns.Store(c, struct{}{})
	s.stats.Open.Add(1)
	s.stats.Opened.Add(1)
	_ = sess.Write(protocol.OpenPacket(c.id, s.cfg.PingInterval, s.cfg.PingTimeout, s.cfg.MaxPayload))
	s.h.Open(c, c.req)
	c.req = nil
	c.mu.Lock()
	c.timer = time.AfterFunc(s.cfg.PingInterval, c.heartbeat)
	c.mu.Unlock()
}

func (s *Server) onMessage(sess *melody.Session, frame []byte) {
	c := connOf(sess)
	if c == nil || c.closed.Load() {
		return
	}
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

func (s *Server) onBinary(sess *melody.Session, data []byte) {
	if c := connOf(sess); c != nil && !c.closed.Load() {
		s.h.Binary(c, data)
	}
}

func (s *Server) onError(sess *melody.Session, err error) {
	c := connOf(sess)
	if c == nil {
		return
	}
	switch {
	case errors.Is(err, melody.ErrMessageBufferFull):
		if c.setReason(ReasonSlowConsumer) {
			s.stats.SlowConsumers.Add(1)
		}
		c.kill()
	case errors.Is(err, websocket.ErrReadLimit):
		if c.setReason(ReasonPayloadTooBig) {
			s.stats.Oversized.Add(1)
		}
	case errors.Is(err, melody.ErrWriteClosed), errors.Is(err, melody.ErrSessionClosed):
	default:
		var ce *websocket.CloseError
		if errors.As(err, &ce) {
			c.setReason(ReasonTransportClose)
		} else {
			c.setReason(ReasonTransportError)
		}
	}
}

func (s *Server) onDisconnect(sess *melody.Session) {
	c := connOf(sess)
	if c == nil {
		return
	}
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
}

// Len returns the number of open connections.
func (s *Server) Len() int { return int(s.stats.Open.Load()) }

// Shutdown stops accepting connections, closes every open one with a
// "going away" close frame (clients reconnect elsewhere), and waits until
// they are gone or ctx is done, when the rest are cut.
func (s *Server) Shutdown(ctxDone <-chan struct{}) {
	s.closing.Store(true)
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
	s.closeOne.Do(func() { _ = s.m.Close() })
}

// Conn is one Engine.IO connection.
type Conn struct {
	id  string
	srv *Server

	sess    *melody.Session
	req     *http.Request // only until Open returns
	netMu   sync.Mutex
	netConn net.Conn

	closed atomic.Bool

	// sink, when set, replaces the WebSocket session (NewDetachedConn).
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
	c.netMu.Lock()
	defer c.netMu.Unlock()
	if c.netConn == nil {
		return nil
	}
	return c.netConn.RemoteAddr()
}

// Send queues a complete Engine.IO text frame. It never blocks; it returns
// false when the connection is closed or its queue overflowed, in which
// case the connection is being closed as a slow consumer.
func (c *Conn) Send(frame []byte) bool {
	if c.sink != nil {
		return c.sink(frame)
	}
	if c.closed.Load() || c.sess == nil {
		return false
	}
	if err := c.sess.Write(frame); err != nil {
		return false
	}
	return !c.closed.Load()
}

// SendBinary queues a binary frame.
func (c *Conn) SendBinary(frame []byte) bool {
	if c.closed.Load() || c.sess == nil {
		return false
	}
	return c.sess.WriteBinary(frame) == nil
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
	if c.sess == nil || c.sess.IsClosed() {
		return
	}
	if len(text) > 120 {
		text = text[:120]
	}
	_ = c.sess.CloseWithMsg(websocket.FormatCloseMessage(code, text))
	time.AfterFunc(c.srv.cfg.WriteTimeout, c.kill)
}

// kill cuts the TCP connection at once; the reader then ends the session.
func (c *Conn) kill() {
	c.closed.Store(true)
	c.netMu.Lock()
	nc := c.netConn
	c.netMu.Unlock()
	if nc != nil {
		_ = nc.Close()
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

// hijackRecorder lets the transport keep the raw connection that the
// WebSocket upgrade hijacks, so that a slow or dead client can be cut at
// once instead of waiting behind a full queue.
type hijackRecorder struct {
	http.ResponseWriter
	conn     *Conn
	upgraded chan struct{} // closed once hijacked (or once the upgrade failed)
	once     sync.Once
}

func (h *hijackRecorder) release() { h.once.Do(func() { close(h.upgraded) }) }

func (h *hijackRecorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := h.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("engineio: response writer cannot hijack")
	}
	nc, rw, err := hj.Hijack()
	if err == nil {
		h.conn.netMu.Lock()
		h.conn.netConn = nc
		h.conn.netMu.Unlock()
		h.release()
	}
	return nc, rw, err
}
