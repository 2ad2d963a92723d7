package hub

import (
	"context"
	"encoding/json"
	"regexp"
	"runtime"
	"strings"
	"time"

	"github.com/medianest/hub/events"
	"github.com/medianest/hub/hub/protocol"
	"github.com/medianest/hub/hub/socketio"
)

const (
	roomLogs   = "logs"
	roomAlerts = "alerts"
	mediaRoom  = "media:"
)

var mediaRoomID = regexp.MustCompile(`^[A-Za-z0-9_-]{1,128}$`)

// clientError tells a socket its input was refused, with a stable code.
func (n *Node) clientError(s *socketio.Socket, ack socketio.Ack, message, code string) {
	n.metrics.refused.WithLabelValues(code).Inc()
	if st := stateOf(s); st != nil && code != "not_authenticated" {
		data := events.SecurityData{IP: st.ip, Reason: code + ": " + message}
		if id := st.identity(); id != nil {
			data.UserID = id.UserID
		}
		n.sec.emit(events.SecBadInput, "ip:"+st.ip, data)
	}
	payload := map[string]string{"message": message, "code": code}
	s.Emit("error", payload)
	if ack != nil {
		ack(marshal(payload))
	}
}

// reply emits event to the socket and, when the client asked for one,
// acks with the same payload.
func reply(s *socketio.Socket, ack socketio.Ack, event string, v any) {
	raw := marshal(v)
	s.Emit(event, raw)
	if ack != nil {
		ack(raw)
	}
}

// objectArg decodes the first argument as a JSON object; ok is false when
// it is missing, null or not an object.
func objectArg(args []json.RawMessage) (map[string]json.RawMessage, bool) {
	if len(args) == 0 {
		return nil, false
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(args[0], &m) != nil || m == nil {
		return nil, false
	}
	return m, true
}

// stringField reads a string field of an object argument, or the argument
// itself when it is a bare string.
func stringField(args []json.RawMessage, field string) (string, bool) {
	if len(args) == 0 {
		return "", false
	}
	var s string
	if json.Unmarshal(args[0], &s) == nil {
		return s, true
	}
	m, ok := objectArg(args)
	if !ok {
		return "", false
	}
	if json.Unmarshal(m[field], &s) != nil {
		return "", false
	}
	return s, true
}

func (n *Node) onPing(s *socketio.Socket, args []json.RawMessage, ack socketio.Ack) {
	out := map[string]any{}
	if m, ok := objectArg(args); ok {
		for k, v := range m {
			out[k] = v
		}
	}
	out["serverTime"] = serverTime()
	reply(s, ack, "pong", out)
}

func (n *Node) onEcho(s *socketio.Socket, args []json.RawMessage, ack socketio.Ack) {
	vals := make([]any, len(args))
	for i, a := range args {
		vals[i] = a
	}
	s.Emit("echo", vals...)
	if ack != nil {
		ack(args...)
	}
}

func (n *Node) onUserInfo(s *socketio.Socket, _ []json.RawMessage, ack socketio.Ack) {
	st := stateOf(s)
	if st == nil || st.identity() == nil {
		n.clientError(s, ack, "User not authenticated", "not_authenticated")
		return
	}
	reply(s, ack, "user-info", userJSON(st.identity()))
}

func (n *Node) roomArg(s *socketio.Socket, args []json.RawMessage, ack socketio.Ack) (string, bool) {
	id, ok := stringField(args, "roomId")
	if !ok || !mediaRoomID.MatchString(id) {
		n.clientError(s, ack, "Invalid room ID", "invalid_room")
		return "", false
	}
	return id, true
}

// maxMediaRooms bounds the media rooms one socket may be in, so one
// media-status cannot fan out to thousands of rooms.
const maxMediaRooms = 32

func (n *Node) onJoinMediaRoom(s *socketio.Socket, args []json.RawMessage, ack socketio.Ack) {
	id, ok := n.roomArg(s, args, ack)
	if !ok {
		return
	}
	if !s.In(mediaRoom+id) && mediaRoomCount(s) >= maxMediaRooms {
		n.clientError(s, ack, "Too many media rooms", "too_many_rooms")
		return
	}
	s.Join(mediaRoom + id)
	reply(s, ack, "joined-room", map[string]string{"roomId": id, "room": mediaRoom + id})
}

func (n *Node) onLeaveMediaRoom(s *socketio.Socket, args []json.RawMessage, ack socketio.Ack) {
	id, ok := n.roomArg(s, args, ack)
	if !ok {
		return
	}
	s.Leave(mediaRoom + id)
	reply(s, ack, "left-room", map[string]string{"roomId": id, "room": mediaRoom + id})
}

// onMediaStatus relays a status update to the other members of the
// sender's media rooms (or of the one named by roomId) on every node.
func (n *Node) onMediaStatus(s *socketio.Socket, args []json.RawMessage, ack socketio.Ack) {
	st := stateOf(s)
	m, ok := objectArg(args)
	if !ok {
		n.clientError(s, ack, "media-status needs an object payload", "invalid_payload")
		return
	}
	var rooms []string
	if raw, named := m["roomId"]; named {
		var id string
		if json.Unmarshal(raw, &id) != nil || !mediaRoomID.MatchString(id) {
			n.clientError(s, ack, "Invalid room ID", "invalid_room")
			return
		}
		if !s.In(mediaRoom + id) {
			n.clientError(s, ack, "Not a member of room "+id, "not_in_room")
			return
		}
		rooms = []string{mediaRoom + id}
	} else {
		for _, r := range s.Rooms() {
			if strings.HasPrefix(r, mediaRoom) {
				rooms = append(rooms, r)
			}
		}
	}
	if len(rooms) == 0 {
		n.clientError(s, ack, "Join a media room first", "not_in_room")
		return
	}
	if st != nil && st.identity() != nil {
		m["userId"] = marshal(st.identity().UserID)
	}
	m["timestamp"] = marshal(serverTime())
	data := marshal(m)
	now := time.Now()
	frame := protocol.AppendEvent(nil, s.Namespace().Name(), protocol.NoID, "media-status", data)
	delivered := s.Namespace().BroadcastFrameRooms(rooms, frame, s.ID())
	for _, room := range rooms {
		n.publishEmit(s.Namespace().Name(), room, events.EmitMessage{
			Event: "media-status", Data: data, Except: []string{s.ID()}, Node: n.cfg.NodeID, TS: now.UnixNano(),
		})
	}
	n.nsm[s.Namespace().Name()].eventsOut.Add(float64(delivered))
	if ack != nil {
		ack(marshal(map[string]any{"ok": true, "rooms": len(rooms)}))
	}
}

func mediaRoomCount(s *socketio.Socket) int {
	c := 0
	for _, r := range s.Rooms() {
		if strings.HasPrefix(r, mediaRoom) {
			c++
		}
	}
	return c
}

func (n *Node) onUsersConnected(s *socketio.Socket, _ []json.RawMessage, ack socketio.Ack) {
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), n.cfg.ClusterTimeout*2)
		defer cancel()
		total := n.clusterCount(ctx)
		reply(s, ack, "admin:users:connected", total)
	}()
}

func (n *Node) onUserDisconnect(s *socketio.Socket, args []json.RawMessage, ack socketio.Ack) {
	userID, ok := stringField(args, "userId")
	if !ok || userID == "" || len(userID) > 256 {
		n.clientError(s, ack, "admin:user:disconnect needs a userId", "invalid_payload")
		return
	}
	actor := stateOf(s).identity().UserID
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), n.cfg.ClusterTimeout*2)
		defer cancel()
		count, nodes := n.clusterOp(ctx, events.CtlDisconnect, events.CtlMessage{UserID: userID, Reason: "disconnected by an administrator"})
		n.audit(context.Background(), actor, "user.disconnect", userID, map[string]int{"sockets": count, "nodes": nodes})
		reply(s, ack, "admin:user:disconnect", map[string]any{"ok": true, "userId": userID, "disconnected": count, "nodes": nodes})
	}()
}

func (n *Node) audit(ctx context.Context, actor, action, target string, result any) {
	res := string(marshal(result))
	n.log.Info().Str("actor", actor).Str("action", action).Str("target", target).RawJSON("result", []byte(res)).Msg("audit")
	if n.auditor == nil {
		return
	}
	// The record must not depend on what is left of the caller's deadline.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := n.auditor.Audit(ctx, actor, action, target, res); err != nil {
		n.log.Error().Err(err).Str("action", action).Msg("audit record not stored")
	}
}

func (n *Node) onSystemHealth(s *socketio.Socket, _ []json.RawMessage, ack socketio.Ack) {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	sockets := map[string]int{}
	for name, nsp := range n.ns {
		sockets[name] = nsp.Len()
	}
	reply(s, ack, "system-health", map[string]any{
		"node":        n.cfg.NodeID,
		"uptime":      time.Since(n.started).Seconds(),
		"connections": n.Connections(),
		"sockets":     sockets,
		"users":       n.userCount(),
		"memory": map[string]uint64{
			"heapAlloc": ms.HeapAlloc, "heapInuse": ms.HeapInuse, "sys": ms.Sys, "stackInuse": ms.StackInuse,
		},
		"goroutines": runtime.NumGoroutine(),
		"nats":       n.nc.IsConnected(),
		"timestamp":  serverTime(),
	})
}

func (n *Node) roomToggle(room string, join bool) socketio.Handler {
	return func(s *socketio.Socket, _ []json.RawMessage, ack socketio.Ack) {
		if join {
			s.Join(room)
		} else {
			s.Leave(room)
		}
		if ack != nil {
			ack(marshal(map[string]any{"ok": true, "room": room, "subscribed": join}))
		}
	}
}
