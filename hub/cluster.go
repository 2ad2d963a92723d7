package hub

import (
	"context"
	"encoding/json"
	"strings"

	"github.com/nats-io/nats.go"

	"github.com/medianest/hub/events"
	"github.com/medianest/hub/hub/socketio"
	"github.com/medianest/hub/internal/cluster"
)

// announce publishes this node's heartbeat.
func (n *Node) announce(hello, leaving bool) {
	info := events.NodeInfo{Node: n.cfg.NodeID, Connections: n.Connections(), Started: n.started, Hello: hello, Leaving: leaving}
	if err := n.nc.Publish(n.subj.Ctl(events.CtlNode), marshal(info)); err != nil {
		n.log.Debug().Err(err).Msg("heartbeat not published")
	}
}

// onCtl runs a cluster-wide operation on this node's sockets.
func (n *Node) onCtl(m *nats.Msg) {
	op := m.Subject[strings.LastIndexByte(m.Subject, '.')+1:]
	if op == events.CtlNode {
		var info events.NodeInfo
		if json.Unmarshal(m.Data, &info) == nil && n.peers.Observe(info) {
			n.announce(false, false)
		}
		return
	}
	switch op {
	case events.CtlRevoke:
		n.ctlReply(m, n.onCtlRevoke(m.Data))
		return
	case events.CtlBlock, events.CtlUnblock:
		n.ctlReply(m, n.onCtlBlock(op, m.Data))
		return
	}
	var msg events.CtlMessage
	if len(m.Data) > 0 {
		if err := json.Unmarshal(m.Data, &msg); err != nil {
			n.ctlReply(m, events.CtlReply{Node: n.cfg.NodeID, Error: "invalid payload: " + err.Error()})
			return
		}
	}
	r := events.CtlReply{Node: n.cfg.NodeID}
	switch op {
	case events.CtlCount:
		r.Namespaces = make(map[string]int, len(n.ns))
		for name, nsp := range n.ns {
			if msg.NS == "" || msg.NS == name {
				c := nsp.Len()
				r.Namespaces[name] = c
				r.Count += c
			}
		}
		r.UserIDs = n.userIDs()
		r.Users = len(r.UserIDs)
	case events.CtlDisconnect:
		if !msg.HasSelector() {
			r.Error = "a selector (user_id, session_id, socket_id or ip) is required"
			break
		}
		reason := msg.Reason
		if reason == "" {
			reason = "disconnected by the server"
		}
		r.Count = n.eachMatch(msg, func(s *socketio.Socket) {
			s.Emit("server:disconnect", map[string]string{"reason": reason})
			s.Disconnect()
		})
		if r.Count > 0 {
			n.log.Info().Str("user", msg.UserID).Str("session", msg.SessionID).Str("ip", msg.IP).
				Int("sockets", r.Count).Str("reason", reason).Msg("sockets disconnected by control message")
		}
	case events.CtlJoin, events.CtlLeave:
		if !msg.HasSelector() || msg.Room == "" {
			r.Error = "a selector and a room are required"
			break
		}
		r.Count = n.eachMatch(msg, func(s *socketio.Socket) {
			if op == events.CtlJoin {
				s.Join(msg.Room)
			} else {
				s.Leave(msg.Room)
			}
		})
	default:
		r.Error = "unknown operation " + op
	}
	n.ctlReply(m, r)
}

func (n *Node) ctlReply(m *nats.Msg, r events.CtlReply) {
	if m.Reply == "" {
		if r.Error != "" {
			n.log.Warn().Str("subject", m.Subject).Str("error", r.Error).Msg("control message refused")
		}
		return
	}
	if err := m.Respond(marshal(r)); err != nil {
		n.log.Debug().Err(err).Msg("control reply not sent")
	}
}

// eachMatch calls fn for each local socket the message selects and
// returns how many there were.
func (n *Node) eachMatch(msg events.CtlMessage, fn func(*socketio.Socket)) int {
	count := 0
	for name, nsp := range n.ns {
		if msg.NS != "" && msg.NS != name {
			continue
		}
		var candidates []*socketio.Socket
		switch {
		case msg.SocketID != "":
			if s := nsp.Socket(msg.SocketID); s != nil {
				candidates = append(candidates, s)
			}
		case msg.UserID != "":
			candidates = nsp.RoomSockets("user:" + msg.UserID)
		default:
			nsp.Each(func(s *socketio.Socket) bool { candidates = append(candidates, s); return true })
		}
		for _, s := range candidates {
			if matches(s, msg) {
				fn(s)
				count++
			}
		}
	}
	return count
}

func matches(s *socketio.Socket, msg events.CtlMessage) bool {
	st := stateOf(s)
	if st == nil {
		return false
	}
	if msg.SocketID != "" && s.ID() != msg.SocketID {
		return false
	}
	if msg.IP != "" && st.ip != msg.IP {
		return false
	}
	id := st.identity()
	if msg.UserID != "" && (id == nil || id.UserID != msg.UserID) {
		return false
	}
	if msg.SessionID != "" && (id == nil || st.sessionID() != msg.SessionID) {
		return false
	}
	return true
}

// gather sends a control request to every node and collects replies until
// every known node answered or the cluster timeout passes.
func (n *Node) gather(ctx context.Context, op string, msg events.CtlMessage) []events.CtlReply {
	msg.Origin = n.cfg.NodeID
	replies, err := cluster.Gather(ctx, n.nc, n.subj.Ctl(op), marshal(msg), n.peers.Count(), n.cfg.ClusterTimeout)
	if err != nil {
		n.log.Warn().Err(err).Str("op", op).Msg("cluster request failed")
	}
	return replies
}

// clusterOp runs a control operation on every node and sums the matches.
func (n *Node) clusterOp(ctx context.Context, op string, msg events.CtlMessage) (count, nodes int) {
	for _, r := range n.gather(ctx, op, msg) {
		count += r.Count
		nodes++
	}
	return count, nodes
}

// ClusterCount is the cluster-wide count of sockets and users. Count is
// the number of distinct authenticated users (the answer to
// admin:users:connected); Sockets counts every socket in every namespace.
type ClusterCount struct {
	Count      int            `json:"count"`
	Sockets    int            `json:"sockets"`
	Users      int            `json:"users"`
	Nodes      int            `json:"nodes"`
	Namespaces map[string]int `json:"namespaces"`
}

func (n *Node) clusterCount(ctx context.Context) ClusterCount {
	out := ClusterCount{Namespaces: map[string]int{}}
	users := map[string]struct{}{}
	for _, r := range n.gather(ctx, events.CtlCount, events.CtlMessage{}) {
		out.Nodes++
		out.Sockets += r.Count
		for _, u := range r.UserIDs {
			users[u] = struct{}{}
		}
		for k, v := range r.Namespaces {
			out.Namespaces[k] += v
		}
	}
	out.Users = len(users)
	out.Count = out.Users
	return out
}

// ClusterCount returns the cluster-wide count of sockets and users.
func (n *Node) ClusterCount(ctx context.Context) ClusterCount { return n.clusterCount(ctx) }

// Disconnect disconnects the sockets msg selects on every node and returns
// how many were closed.
func (n *Node) Disconnect(ctx context.Context, msg events.CtlMessage) (int, int) {
	return n.clusterOp(ctx, events.CtlDisconnect, msg)
}
