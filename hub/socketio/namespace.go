package socketio

import (
	"encoding/json"
	"hash/maphash"
	"sync"
	"sync/atomic"

	"github.com/medianest/hub/hub/protocol"
)

const shardCount = 32

var seed = maphash.MakeSeed()

func shardOf(key string) int { return int(maphash.String(seed, key) % shardCount) }

type roomShard struct {
	mu    sync.RWMutex
	rooms map[string]map[*Socket]struct{}
}

type socketShard struct {
	mu      sync.RWMutex
	sockets map[string]*Socket
}

// Namespace is a Socket.io namespace: its handlers, sockets and rooms.
type Namespace struct {
	name string
	srv  *Server

	// Middleware, if set, runs for each CONNECT with the auth payload; a
	// non-nil error refuses the socket ([*ConnectError] for the client's
	// message). It may set Socket.Data and join rooms.
	Middleware func(s *Socket, auth json.RawMessage) error
	// OnConnect, if set, runs after the CONNECT reply is queued.
	OnConnect func(s *Socket)
	// OnDisconnect, if set, runs when a socket leaves, after its rooms.
	OnDisconnect func(s *Socket, reason string)
	// Fallback, if set, handles events without a handler of their own.
	Fallback FallbackHandler

	handlers map[string]Handler
	count    atomic.Int64
	rooms    [shardCount]roomShard
	sockets  [shardCount]socketShard
}

func newNamespace(srv *Server, name string) *Namespace {
	ns := &Namespace{name: name, srv: srv, handlers: make(map[string]Handler)}
	for i := range ns.rooms {
		ns.rooms[i].rooms = make(map[string]map[*Socket]struct{})
		ns.sockets[i].sockets = make(map[string]*Socket)
	}
	return ns
}

// Name is the namespace's name, like "/media".
func (ns *Namespace) Name() string { return ns.name }

// On registers the handler of a client event. Call it during setup only.
func (ns *Namespace) On(event string, h Handler) { ns.handlers[event] = h }

// Len returns the number of sockets connected to the namespace.
func (ns *Namespace) Len() int { return int(ns.count.Load()) }

// Socket returns the socket with the given id, or nil.
func (ns *Namespace) Socket(id string) *Socket {
	sh := &ns.sockets[shardOf(id)]
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	return sh.sockets[id]
}

// Each calls fn for every socket of the namespace until fn returns false.
// fn must not join or leave rooms of this namespace's sockets' shards
// synchronously in a way that blocks; it may emit.
func (ns *Namespace) Each(fn func(*Socket) bool) {
	for i := range ns.sockets {
		sh := &ns.sockets[i]
		sh.mu.RLock()
		list := make([]*Socket, 0, len(sh.sockets))
		for _, s := range sh.sockets {
			list = append(list, s)
		}
		sh.mu.RUnlock()
		for _, s := range list {
			if !fn(s) {
				return
			}
		}
	}
}

// RoomLen returns the number of sockets in a room.
func (ns *Namespace) RoomLen(room string) int {
	sh := &ns.rooms[shardOf(room)]
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	return len(sh.rooms[room])
}

func (ns *Namespace) add(s *Socket) {
	s.connected.Store(true)
	sh := &ns.sockets[shardOf(s.id)]
	sh.mu.Lock()
	sh.sockets[s.id] = s
	sh.mu.Unlock()
	ns.count.Add(1)
}

// remove takes s out of the namespace: rooms, registry and pending acks.
// It runs at most once per socket.
func (ns *Namespace) remove(s *Socket, reason string) {
	if !s.connected.CompareAndSwap(true, false) {
		return
	}
	s.leaveAll()
	sh := &ns.sockets[shardOf(s.id)]
	sh.mu.Lock()
	delete(sh.sockets, s.id)
	sh.mu.Unlock()
	ns.count.Add(-1)
	s.failAcks()
	if ns.OnDisconnect != nil {
		ns.OnDisconnect(s, reason)
	}
}

func (ns *Namespace) join(s *Socket, room string) {
	sh := &ns.rooms[shardOf(room)]
	sh.mu.Lock()
	members := sh.rooms[room]
	if members == nil {
		members = make(map[*Socket]struct{})
		sh.rooms[room] = members
	}
	members[s] = struct{}{}
	sh.mu.Unlock()
}

func (ns *Namespace) leave(s *Socket, room string) {
	sh := &ns.rooms[shardOf(room)]
	sh.mu.Lock()
	if members := sh.rooms[room]; members != nil {
		delete(members, s)
		if len(members) == 0 {
			delete(sh.rooms, room)
		}
	}
	sh.mu.Unlock()
}

// BroadcastFrame writes a prepared frame to every socket of a room, or of
// the namespace when room is "", except the sockets whose ids are listed.
// It returns the number of sockets the frame was queued for. It never
// blocks: a socket whose queue is full is disconnected as slow.
func (ns *Namespace) BroadcastFrame(room string, frame []byte, except ...string) int {
	n := 0
	skip := func(s *Socket) bool {
		for _, id := range except {
			if s.id == id {
				return true
			}
		}
		return false
	}
	if room == "" {
		for i := range ns.sockets {
			sh := &ns.sockets[i]
			sh.mu.RLock()
			for _, s := range sh.sockets {
				if (len(except) == 0 || !skip(s)) && s.conn.send(frame) {
					n++
				}
			}
			sh.mu.RUnlock()
		}
	} else {
		sh := &ns.rooms[shardOf(room)]
		sh.mu.RLock()
		for s := range sh.rooms[room] {
			if (len(except) == 0 || !skip(s)) && s.conn.send(frame) {
				n++
			}
		}
		sh.mu.RUnlock()
	}
	ns.srv.stats.BroadcastFrames.Add(1)
	return n
}

// BroadcastFrameRooms writes a prepared frame once to every socket in any
// of the rooms, except the listed sockets.
func (ns *Namespace) BroadcastFrameRooms(rooms []string, frame []byte, except ...string) int {
	if len(rooms) == 1 {
		return ns.BroadcastFrame(rooms[0], frame, except...)
	}
	seen := make(map[*Socket]struct{})
	for _, room := range rooms {
		for _, s := range ns.RoomSockets(room) {
			seen[s] = struct{}{}
		}
	}
	n := 0
	for s := range seen {
		skip := false
		for _, id := range except {
			skip = skip || s.id == id
		}
		if !skip && s.conn.send(frame) {
			n++
		}
	}
	ns.srv.stats.BroadcastFrames.Add(1)
	return n
}

// EmitTo encodes an event once and broadcasts it to a room ("" = all).
func (ns *Namespace) EmitTo(room, event string, args ...any) (int, error) {
	raw, err := marshalArgs(args)
	if err != nil {
		return 0, err
	}
	return ns.BroadcastFrame(room, protocol.AppendEvent(nil, ns.name, protocol.NoID, event, raw...)), nil
}

func marshalArgs(args []any) ([]json.RawMessage, error) {
	raw := make([]json.RawMessage, len(args))
	for i, a := range args {
		if r, ok := a.(json.RawMessage); ok {
			raw[i] = r
			continue
		}
		b, err := json.Marshal(a)
		if err != nil {
			return nil, err
		}
		raw[i] = b
	}
	return raw, nil
}

// RoomSockets returns the sockets in a room.
func (ns *Namespace) RoomSockets(room string) []*Socket {
	sh := &ns.rooms[shardOf(room)]
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	out := make([]*Socket, 0, len(sh.rooms[room]))
	for s := range sh.rooms[room] {
		out = append(out, s)
	}
	return out
}
