package socketio

import (
	"encoding/json"
	"sync"
	"sync/atomic"
	"time"

	"github.com/medianest/hub/hub/protocol"
)

// Socket is a client's presence in one namespace.
type Socket struct {
	id        string
	ns        *Namespace
	conn      *Conn
	connected atomic.Bool

	mu      sync.Mutex
	rooms   map[string]struct{}
	removed bool // left its namespace (or was refused): joins are ignored
	acks    map[int64]*ackWaiter
	nextAck int64

	// Data is the application's state for the socket; set it in the
	// namespace middleware, read it anywhere afterwards.
	Data any
}

// ID is the socket id the client sees as socket.id.
func (s *Socket) ID() string { return s.id }

// Namespace returns the socket's namespace.
func (s *Socket) Namespace() *Namespace { return s.ns }

// Conn returns the connection the socket lives on.
func (s *Socket) Conn() *Conn { return s.conn }

// Connected reports whether the socket is still in its namespace.
func (s *Socket) Connected() bool { return s.connected.Load() }

// Join adds the socket to a room. A socket that has left its namespace
// joins nothing. The room registry is updated under the socket's lock
// (lock order: socket, then room shard), so concurrent joins and leaves
// of one socket cannot leave it behind in a room.
func (s *Socket) Join(room string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.removed {
		return
	}
	if s.rooms == nil {
		s.rooms = make(map[string]struct{}, 4)
	}
	if _, had := s.rooms[room]; had {
		return
	}
	s.rooms[room] = struct{}{}
	s.ns.join(s, room)
}

// Leave removes the socket from a room.
func (s *Socket) Leave(room string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, had := s.rooms[room]; had {
		delete(s.rooms, room)
		s.ns.leave(s, room)
	}
}

// RoomCount is the number of rooms the socket is in.
func (s *Socket) RoomCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.rooms)
}

// In reports whether the socket is in a room.
func (s *Socket) In(room string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.rooms[room]
	return ok
}

// Rooms returns the socket's rooms.
func (s *Socket) Rooms() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.rooms))
	for r := range s.rooms {
		out = append(out, r)
	}
	return out
}

// leaveAll takes the socket out of every room for good.
func (s *Socket) leaveAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.removed = true
	for r := range s.rooms {
		s.ns.leave(s, r)
	}
	s.rooms = nil
}

// Emit sends an event to this socket. Each arg is marshalled to JSON (a
// json.RawMessage is sent as is). It reports whether the frame was queued.
func (s *Socket) Emit(event string, args ...any) bool {
	raw, err := marshalArgs(args)
	if err != nil {
		s.ns.srv.log.Error().Err(err).Str("event", event).Msg("cannot marshal event arguments")
		return false
	}
	return s.conn.send(protocol.AppendEvent(nil, s.ns.name, protocol.NoID, event, raw...))
}

// EmitWithAck sends an event and calls cb with the client's ack arguments,
// or with [ErrAckTimeout] or [ErrDisconnected]. cb runs on another goroutine.
func (s *Socket) EmitWithAck(event string, timeout time.Duration, cb func([]json.RawMessage, error), args ...any) bool {
	raw, err := marshalArgs(args)
	if err != nil {
		cb(nil, err)
		return false
	}
	s.mu.Lock()
	if !s.connected.Load() {
		s.mu.Unlock()
		go cb(nil, ErrDisconnected)
		return false
	}
	id := s.nextAck
	s.nextAck++
	if s.acks == nil {
		s.acks = make(map[int64]*ackWaiter)
	}
	w := &ackWaiter{cb: cb}
	s.acks[id] = w
	w.timer = time.AfterFunc(timeout, func() {
		if s.takeAck(id) != nil {
			cb(nil, ErrAckTimeout)
		}
	})
	s.mu.Unlock()
	return s.conn.send(protocol.AppendEvent(nil, s.ns.name, id, event, raw...))
}

func (s *Socket) takeAck(id int64) *ackWaiter {
	s.mu.Lock()
	defer s.mu.Unlock()
	w := s.acks[id]
	delete(s.acks, id)
	return w
}

func (s *Socket) resolveAck(id int64, args []json.RawMessage) {
	if w := s.takeAck(id); w != nil {
		w.timer.Stop()
		go w.cb(args, nil)
	}
}

func (s *Socket) failAcks() {
	s.mu.Lock()
	acks := s.acks
	s.acks = nil
	s.mu.Unlock()
	for _, w := range acks {
		w.timer.Stop()
		go w.cb(nil, ErrDisconnected)
	}
}

// Disconnect removes the socket from its namespace and tells the client
// ("io server disconnect"). The connection stays open for its other
// namespaces.
func (s *Socket) Disconnect() {
	if !s.conn.detach(s) {
		return
	}
	s.conn.send(protocol.DisconnectFrame(s.ns.name))
	s.ns.remove(s, ReasonServerNamespaceDisconnect)
}

func (s *Socket) dispatch(event string, args []json.RawMessage, id int64) {
	var ack Ack
	if id != protocol.NoID {
		var once atomic.Bool
		ack = func(res ...json.RawMessage) {
			if once.CompareAndSwap(false, true) {
				s.conn.send(protocol.AppendAck(nil, s.ns.name, id, res...))
			}
		}
	}
	if g := s.ns.srv.Guard; g != nil {
		if refusal := g(s, event); refusal != nil {
			if ack != nil {
				ack(refusal)
			}
			return
		}
	}
	if h := s.ns.handlers[event]; h != nil {
		h(s, args, ack)
		return
	}
	if f := s.ns.Fallback; f != nil {
		f(s, event, args, ack)
	}
	// Socket.io drops events nobody listens to.
}
