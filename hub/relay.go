package hub

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"

	"github.com/medianest/hub/events"
	"github.com/medianest/hub/hub/protocol"
	"github.com/medianest/hub/hub/socketio"
)

// maxEventName bounds the event names the node forwards to backends.
const maxEventName = 128

// publishEmit hands an emit to the other nodes.
func (n *Node) publishEmit(ns, room string, em events.EmitMessage) {
	subject, err := n.subj.Emit(ns, room)
	if err != nil {
		n.log.Error().Err(err).Msg("cannot build emit subject")
		return
	}
	if err := n.nc.Publish(subject, marshal(em)); err != nil {
		n.metrics.publishErrors.WithLabelValues("emit").Inc()
		n.log.Warn().Err(err).Str("subject", subject).Msg("relay publish failed")
	}
}

// onEmit delivers a hub.emit message to this node's sockets.
func (n *Node) onEmit(m *nats.Msg) {
	ns, room, err := n.subj.ParseEmit(m.Subject)
	if err != nil {
		n.metrics.relayIn.WithLabelValues("bad_subject").Inc()
		n.log.Warn().Err(err).Msg("ignoring emit on a malformed subject")
		return
	}
	var em events.EmitMessage
	if err := json.Unmarshal(m.Data, &em); err != nil || em.Event == "" {
		n.metrics.relayIn.WithLabelValues("bad_payload").Inc()
		n.log.Warn().Err(err).Str("subject", m.Subject).Msg("ignoring emit without a valid {event, data|args} payload")
		return
	}
	if em.Node == n.cfg.NodeID {
		return // delivered locally when it was published
	}
	if _, err := n.deliver(ns, room, em); err != nil {
		n.metrics.relayIn.WithLabelValues("refused").Inc()
		n.log.Warn().Err(err).Str("subject", m.Subject).Msg("emit not delivered")
		return
	}
	n.metrics.relayIn.WithLabelValues("delivered").Inc()
	if em.TS > 0 {
		if d := time.Since(time.Unix(0, em.TS)); d >= 0 {
			n.metrics.relayLatency.Observe(d.Seconds())
		}
	}
}

var errUnknownNamespace = errors.New("unknown namespace")

// deliver encodes an emit once and writes it to the room's local sockets.
func (n *Node) deliver(ns, room string, em events.EmitMessage) (int, error) {
	nsp := n.ns[ns]
	if nsp == nil {
		return 0, errUnknownNamespace
	}
	var args []json.RawMessage
	switch {
	case len(em.Args) > 0 && string(em.Args) != "null":
		a, err := protocol.SplitArray(em.Args)
		if err != nil {
			return 0, err
		}
		args = a
	case len(em.Data) > 0:
		args = []json.RawMessage{em.Data}
	}
	frame := protocol.AppendEvent(nil, ns, protocol.NoID, em.Event, args...)
	if room == events.AllRoom {
		room = ""
	}
	delivered := nsp.BroadcastFrame(room, frame, em.Except...)
	n.nsm[ns].eventsOut.Add(float64(delivered))
	return delivered, nil
}

// forward hands a client event without a built-in handler to the backends
// on hub.recv: a publish, or a request whose reply is the ack.
func (n *Node) forward(s *socketio.Socket, event string, args []json.RawMessage, ack socketio.Ack) {
	if len(event) > maxEventName || !utf8.ValidString(event) {
		n.clientError(s, ack, "Invalid event name", "invalid_event")
		return
	}
	nsName := s.Namespace().Name()
	subject, err := n.subj.Recv(nsName, event)
	if err != nil {
		n.clientError(s, ack, "Invalid event name", "invalid_event")
		return
	}
	env := events.RecvEnvelope{
		ID: events.NewID(), NS: nsName, Event: event, Socket: s.ID(),
		Roles: []string{}, Node: n.cfg.NodeID, Time: time.Now().UTC(), Args: args,
	}
	if env.Args == nil {
		env.Args = []json.RawMessage{}
	}
	if st := stateOf(s); st != nil {
		if id := st.identity(); id != nil {
			env.User = &id.UserID
			env.Roles = id.Roles
			if sid := st.sessionID(); sid != "" {
				env.Session = &sid
			}
		}
	}
	data := marshal(env)
	if ack == nil {
		if err := n.nc.Publish(subject, data); err != nil {
			n.metrics.publishErrors.WithLabelValues("recv").Inc()
			n.metrics.recvRequests.WithLabelValues("error").Inc()
			n.log.Warn().Err(err).Str("subject", subject).Msg("backend publish failed")
			return
		}
		n.metrics.recvRequests.WithLabelValues("published").Inc()
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), n.cfg.AckTimeout)
		defer cancel()
		msg, err := n.nc.RequestMsgWithContext(ctx, &nats.Msg{Subject: subject, Data: data})
		if err != nil {
			result := "unavailable"
			if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) {
				result = "timeout"
			}
			n.metrics.recvRequests.WithLabelValues(result).Inc()
			ack(events.UnavailableAck)
			return
		}
		n.metrics.recvRequests.WithLabelValues("answered").Inc()
		ack(ackArgs(msg.Data)...)
	}()
}

// ackArgs turns a backend's reply into ack arguments: a JSON array is the
// argument list, any other JSON value is one argument, and anything else is
// sent as a string.
func ackArgs(data []byte) []json.RawMessage {
	trimmed := strings.TrimSpace(string(data))
	if trimmed == "" {
		return nil
	}
	if !json.Valid([]byte(trimmed)) {
		return []json.RawMessage{marshal(string(data))}
	}
	if trimmed[0] == '[' {
		if items, err := protocol.SplitArray(json.RawMessage(trimmed)); err == nil {
			return items
		}
	}
	return []json.RawMessage{json.RawMessage(trimmed)}
}

// onAlert relays security alerts to /system sockets subscribed to them.
func (n *Node) onAlert(m *nats.Msg) {
	if !json.Valid(m.Data) {
		return
	}
	for name, p := range n.policies {
		if p.Has(FeatureSystem) {
			nsp := n.ns[name]
			if nsp.RoomLen(roomAlerts) > 0 {
				nsp.BroadcastFrame(roomAlerts, protocol.AppendEvent(nil, name, protocol.NoID, "alert", m.Data))
			}
		}
	}
}
