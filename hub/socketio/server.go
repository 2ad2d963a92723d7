package socketio

import (
	"encoding/json"
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/rs/zerolog"

	"github.com/medianest/hub/hub/engineio"
	"github.com/medianest/hub/hub/protocol"
)

// Disconnect reasons, as Socket.io names them.
const (
	ReasonClientNamespaceDisconnect = "client namespace disconnect"
	ReasonServerNamespaceDisconnect = "server namespace disconnect"
)

// ErrAckTimeout is passed to an ack callback when the client did not answer.
var ErrAckTimeout = errors.New("ack timeout")

// ErrDisconnected is passed to an ack callback when the socket went away.
var ErrDisconnected = errors.New("socket disconnected")

// Handler handles one client event. ack is nil when the client asked for
// no acknowledgement.
type Handler func(s *Socket, args []json.RawMessage, ack Ack)

// FallbackHandler handles a client event that has no handler of its own.
type FallbackHandler func(s *Socket, event string, args []json.RawMessage, ack Ack)

// Ack answers a client's event; only the first call is sent.
type Ack func(args ...json.RawMessage)

// ConnectError refuses a namespace CONNECT. Message and Data reach the
// client's connect_error handler.
type ConnectError struct {
	Message string
	Data    any
	// CloseConn also closes the whole connection (all namespaces).
	CloseConn bool
}

func (e *ConnectError) Error() string { return "connect refused: " + e.Message }

// Stats counts protocol-level refusals.
type Stats struct {
	BadPackets      atomic.Uint64
	BinaryRefused   atomic.Uint64
	UnknownNSP      atomic.Uint64
	EventsIn        atomic.Uint64
	FramesOut       atomic.Uint64
	BroadcastFrames atomic.Uint64
}

// Server is a Socket.io server.
type Server struct {
	eio        *engineio.Server
	log        zerolog.Logger
	namespaces map[string]*Namespace
	stats      Stats
	mu         sync.Mutex // guards namespaces during setup
	admit      admitters

	// OnOpen, if set, is called for each new connection before any packet.
	OnOpen func(c *Conn, r *http.Request)
	// OnClose, if set, is called when a connection is gone, after its
	// sockets were disconnected.
	OnClose func(c *Conn, reason string)
	// Guard, if set, is called before each client event is dispatched. It
	// returns nil to let the event through, or the ack payload that answers
	// a refused event whose client asked for an ack.
	Guard func(s *Socket, event string) json.RawMessage

	// ConnectTimeout closes a connection that holds no socket this long
	// after it opened or its last socket left (default 45s, as Socket.io).
	ConnectTimeout time.Duration
	// MaxConnectFailures closes a connection after this many refused
	// CONNECTs (default 5), so one connection cannot try tokens forever.
	MaxConnectFailures int
}

// NewServer returns a Server with the given transport configuration.
func NewServer(cfg engineio.Config, log zerolog.Logger) *Server {
	s := &Server{log: log, namespaces: make(map[string]*Namespace)}
	s.admit.jobs = make(chan func())
	s.admit.quit = make(chan struct{})
	s.eio = engineio.NewServer(cfg, (*eioHandler)(s), log)
	return s
}

// Engine returns the transport server.
func (s *Server) Engine() *engineio.Server { return s.eio }

// Stats returns the protocol counters.
func (s *Server) Stats() *Stats { return &s.stats }

// ServeHTTP serves the /socket.io/ endpoint.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.eio.ServeHTTP(w, r) }

// Shutdown closes every connection (see [engineio.Server.Shutdown]).
func (s *Server) Shutdown(done <-chan struct{}) {
	s.eio.Shutdown(done)
	s.admit.stop()
}

// admitters run CONNECT admissions off the readers' goroutines. An
// admitter that finished one waits a while for the next, so a burst of
// connections reuses a few goroutines whose stacks have already grown to
// what admission needs, instead of growing a new one each time (stack
// growth was 8 % of the hub's CPU while connecting).
type admitters struct {
	jobs     chan func() // unbuffered: a job goes to an admitter that waits
	quit     chan struct{}
	stopOnce sync.Once
}

// admitterIdle is how long an idle admitter waits for work.
const admitterIdle = 5 * time.Second

// run runs f on a waiting admitter, or on a new one.
func (a *admitters) run(f func()) {
	select {
	case a.jobs <- f:
	default:
		go a.work(f)
	}
}

func (a *admitters) work(f func()) {
	f()
	idle := time.NewTimer(admitterIdle)
	defer idle.Stop()
	for {
		select {
		case f := <-a.jobs:
			f()
			idle.Reset(admitterIdle)
		case <-idle.C:
			return
		case <-a.quit:
			return
		}
	}
}

func (a *admitters) stop() { a.stopOnce.Do(func() { close(a.quit) }) }

// Of returns the namespace called name, creating it. Call it only during
// setup, before serving.
func (s *Server) Of(name string) *Namespace {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ns, ok := s.namespaces[name]; ok {
		return ns
	}
	ns := newNamespace(s, name)
	s.namespaces[name] = ns
	return ns
}

func (s *Server) lookup(name string) *Namespace {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.namespaces[name]
}

// eioHandler adapts the Server to engineio.Handler without exporting the
// methods on Server.
type eioHandler Server

func (h *eioHandler) Open(ec *engineio.Conn, r *http.Request) {
	s := (*Server)(h)
	c := &Conn{eio: ec, srv: s, sockets: make(map[string]*Socket, 1)}
	ec.Data = c
	c.mu.Lock()
	c.armIdleLocked()
	c.mu.Unlock()
	if s.OnOpen != nil {
		s.OnOpen(c, r)
	}
}

func (h *eioHandler) Message(ec *engineio.Conn, data []byte) {
	c, _ := ec.Data.(*Conn)
	if c == nil {
		return
	}
	defer c.closeOnPanic("event handler")
	c.handle(data)
}

func (h *eioHandler) Binary(ec *engineio.Conn, data []byte) {
	c, _ := ec.Data.(*Conn)
	if c == nil {
		return
	}
	if c.pendingBinary > 0 {
		c.pendingBinary-- // an attachment of a refused binary packet
		return
	}
	c.srv.stats.BadPackets.Add(1)
	ec.CloseWithError(websocket.CloseUnsupportedData, engineio.ReasonParseError, "unexpected binary frame")
}

func (h *eioHandler) Close(ec *engineio.Conn, reason string) {
	s := (*Server)(h)
	c, _ := ec.Data.(*Conn)
	if c == nil {
		return
	}
	for _, sock := range c.takeSockets() {
		sock.ns.remove(sock, reason)
	}
	if s.OnClose != nil {
		s.OnClose(c, reason)
	}
}

// Conn is one client connection, which may hold a socket in each namespace.
type Conn struct {
	eio *engineio.Conn
	srv *Server

	mu      sync.Mutex
	sockets map[string]*Socket

	// pendingBinary and failures are touched only by the reader goroutine.
	pendingBinary int
	failures      int

	// idle closes the connection while it holds no socket; nil while it
	// holds one (as Socket.io's connectTimeout, cleared on a join, but
	// armed again when the last socket leaves). Guarded by mu.
	idle    *time.Timer
	idleGen uint64

	// Data is the application's state for the connection; set it in OnOpen.
	Data any
}

// closeOnPanic, deferred, turns a panic in what handles c's packets into
// a log line and the connection's close (1011): a bug in one handler
// costs one connection, not the node.
func (c *Conn) closeOnPanic(what string) {
	if v := recover(); v != nil {
		c.srv.log.Error().Interface("panic", v).Str("conn", c.ID()).Msgf("%s panicked; closing the connection", what)
		c.eio.CloseWithError(websocket.CloseInternalServerErr, engineio.ReasonServerClose, "internal error")
	}
}

// ID is the Engine.IO session id.
func (c *Conn) ID() string { return c.eio.ID() }

// Transport returns the underlying Engine.IO connection.
func (c *Conn) Transport() *engineio.Conn { return c.eio }

// SetConnectTimeout closes the connection d from now unless it holds a
// socket then.
func (c *Conn) SetConnectTimeout(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.idle != nil {
		c.idle.Reset(d)
	}
}

// connectTimeout is ConnectTimeout or its default.
func (s *Server) connectTimeout() time.Duration {
	if s.ConnectTimeout > 0 {
		return s.ConnectTimeout
	}
	return 45 * time.Second
}

// armIdleLocked starts the idle timer; c.mu is held. Each arming has its
// own generation, so a callback already running when its timer was
// stopped (Stop does not wait for it) finds itself stale.
func (c *Conn) armIdleLocked() {
	c.idleGen++
	gen := c.idleGen
	c.idle = time.AfterFunc(c.srv.connectTimeout(), func() { c.closeIfIdle(gen) })
}

// stopIdleLocked stops the idle timer; c.mu is held.
func (c *Conn) stopIdleLocked() {
	if c.idle != nil {
		c.idle.Stop()
		c.idle = nil // an idle connection's memory is counted in bytes
		c.idleGen++
	}
}

func (c *Conn) closeIfIdle(gen uint64) {
	c.mu.Lock()
	idle := gen == c.idleGen && len(c.sockets) == 0
	c.mu.Unlock()
	if idle {
		c.eio.Close("connect timeout")
	}
}

// Close closes the connection and every socket on it.
func (c *Conn) Close(reason string) { c.eio.Close(reason) }

func (c *Conn) socket(ns string) *Socket {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sockets[ns]
}

func (c *Conn) takeSockets() []*Socket {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]*Socket, 0, len(c.sockets))
	for _, s := range c.sockets {
		out = append(out, s)
	}
	c.sockets = nil
	c.stopIdleLocked()
	return out
}

func (c *Conn) send(frame []byte) bool {
	if c.eio.Send(frame) {
		c.srv.stats.FramesOut.Add(1)
		return true
	}
	return false
}

func (c *Conn) protocolError(err error) {
	c.srv.stats.BadPackets.Add(1)
	if e := c.srv.log.Debug(); e.Enabled() {
		e.Err(err).Str("conn", c.ID()).Msg("closing connection after a bad packet")
	}
	c.eio.CloseWithError(websocket.CloseUnsupportedData, engineio.ReasonParseError, err.Error())
}

func (c *Conn) handle(data []byte) {
	p, err := protocol.Decode(data)
	if err != nil {
		c.protocolError(err)
		return
	}
	switch p.Type {
	case protocol.Connect:
		// Admission (token parsing, session lookups) runs deep call chains;
		// running it on an admitter goroutine keeps the long-lived
		// reader's stack small, which is most of an idle connection's
		// memory. The reader waits, so packets stay in order.
		done := make(chan struct{})
		c.srv.admit.run(func() {
			defer close(done)
			defer c.closeOnPanic("admission")
			c.connect(p)
		})
		<-done
	case protocol.Disconnect:
		if s := c.socket(p.Namespace); s != nil {
			c.detach(s)
			s.ns.remove(s, ReasonClientNamespaceDisconnect)
		}
	case protocol.Event:
		s := c.socket(p.Namespace)
		if s == nil {
			return // the socket was disconnected while the packet was in flight
		}
		c.srv.stats.EventsIn.Add(1)
		s.dispatch(p.Event, p.Args, p.ID)
	case protocol.Ack:
		if s := c.socket(p.Namespace); s != nil {
			args, err := protocol.SplitArray(p.Data)
			if err != nil {
				c.protocolError(err)
				return
			}
			s.resolveAck(p.ID, args)
		}
	case protocol.BinaryEvent, protocol.BinaryAck:
		c.pendingBinary = p.Attachments
		c.srv.stats.BinaryRefused.Add(1)
		if s := c.socket(p.Namespace); s != nil {
			refusal := map[string]string{"message": "Binary attachments are not supported", "code": "binary_unsupported"}
			s.Emit("error", refusal)
			if p.Type == protocol.BinaryEvent && p.ID != protocol.NoID {
				b, _ := json.Marshal(refusal)
				c.send(protocol.AppendAck(nil, p.Namespace, p.ID, b))
			}
		}
	default: // CONNECT_ERROR is server-to-client only
		c.protocolError(errors.New("client sent " + p.Type.String()))
	}
}

func (c *Conn) connect(p protocol.Packet) {
	ns := c.srv.lookup(p.Namespace)
	if ns == nil {
		c.srv.stats.UnknownNSP.Add(1)
		c.send(protocol.ConnectErrorFrame(p.Namespace, protocol.ConnectErrorPayload{Message: "Invalid namespace"}))
		return
	}
	if c.socket(p.Namespace) != nil {
		return // already connected; Socket.io ignores a repeated CONNECT
	}
	s := &Socket{id: engineio.NewID(), ns: ns, conn: c}
	if ns.Middleware != nil {
		if err := ns.Middleware(s, p.Data); err != nil {
			var ce *ConnectError
			if !errors.As(err, &ce) {
				ce = &ConnectError{Message: "Internal error"}
				c.srv.log.Error().Err(err).Str("ns", ns.name).Msg("connect middleware failed")
			}
			s.leaveAll()
			c.send(protocol.ConnectErrorFrame(p.Namespace, protocol.ConnectErrorPayload{Message: ce.Message, Data: ce.Data}))
			c.failures++
			limit := c.srv.MaxConnectFailures
			if limit <= 0 {
				limit = 5
			}
			if ce.CloseConn || c.failures >= limit {
				c.eio.Close(engineio.ReasonServerClose)
			}
			return
		}
	}
	c.mu.Lock()
	if c.sockets == nil { // the connection closed meanwhile
		c.mu.Unlock()
		s.leaveAll()
		return
	}
	c.sockets[p.Namespace] = s
	c.stopIdleLocked()
	c.mu.Unlock()
	ns.add(s)
	c.send(protocol.ConnectFrame(p.Namespace, s.id))
	if ns.OnConnect != nil {
		ns.OnConnect(s)
	}
}

func (c *Conn) detach(s *Socket) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sockets == nil || c.sockets[s.ns.name] != s {
		return false
	}
	delete(c.sockets, s.ns.name)
	if len(c.sockets) == 0 && c.idle == nil {
		c.armIdleLocked()
	}
	return true
}

// ackWaiter is a pending server-to-client ack.
type ackWaiter struct {
	cb    func([]json.RawMessage, error)
	timer *time.Timer
}
