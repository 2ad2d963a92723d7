package hub

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/medianest/hub/events"
	"github.com/medianest/hub/hub/socketio"
)

// roomStatus is where service:status updates go.
const roomStatus = "status-updates"

// onSubscribeStatus joins status-updates and sends every service's last
// known status at once as status:current.
func (n *Node) onSubscribeStatus(s *socketio.Socket, _ []json.RawMessage, ack socketio.Ack) {
	s.Join(roomStatus)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		services, err := n.serviceStatuses(ctx)
		if err != nil {
			n.log.Warn().Err(err).Msg("cannot read service statuses")
			n.clientError(s, ack, "Service status unavailable", "unavailable")
			return
		}
		reply(s, ack, "status:current", map[string]any{"services": services})
	}()
}

func (n *Node) onUnsubscribeStatus(s *socketio.Socket, _ []json.RawMessage, ack socketio.Ack) {
	s.Leave(roomStatus)
	if ack != nil {
		ack(marshal(map[string]any{"ok": true}))
	}
}

// serviceStatuses reads the status bucket the media worker keeps.
func (n *Node) serviceStatuses(ctx context.Context) ([]json.RawMessage, error) {
	if n.js == nil {
		return nil, errors.New("no JetStream")
	}
	kv, err := n.js.KeyValue(ctx, events.ServiceStatusBucket(n.cfg.SubjectPrefix))
	if err != nil {
		return nil, err
	}
	keys, err := kv.ListKeys(ctx)
	if err != nil {
		return nil, err
	}
	out := []json.RawMessage{}
	for key := range keys.Keys() {
		e, err := kv.Get(ctx, key)
		if err != nil {
			continue // deleted meanwhile
		}
		if json.Valid(e.Value()) {
			out = append(out, json.RawMessage(e.Value()))
		}
	}
	return out, nil
}

// onSubscribeRequest lets a client follow one of its own media requests
// in room request:<id>.
func (n *Node) onSubscribeRequest(s *socketio.Socket, args []json.RawMessage, ack socketio.Ack) {
	id, ok := stringField(args, "requestId")
	if !ok || !mediaRoomID.MatchString(id) {
		n.clientError(s, ack, "Invalid request ID", "invalid_request")
		return
	}
	st := stateOf(s)
	user := st.identity()
	if user == nil {
		n.clientError(s, ack, "User not authenticated", "not_authenticated")
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		owner, err := n.requestOwner(ctx, id)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			n.clientError(s, ack, "Unknown request "+id, "not_found")
		case err != nil:
			n.log.Warn().Err(err).Msg("cannot read request owners")
			n.clientError(s, ack, "Request lookup unavailable", "unavailable")
		case owner != user.UserID:
			n.clientError(s, ack, "Request "+id+" belongs to another user", "forbidden")
		default:
			s.Join("request:" + id)
			reply(s, ack, "request:subscribed", map[string]string{"requestId": id, "room": "request:" + id})
		}
	}()
}

func (n *Node) requestOwner(ctx context.Context, id string) (string, error) {
	if n.js == nil {
		return "", errors.New("no JetStream")
	}
	kv, err := n.js.KeyValue(ctx, events.RequestOwnersBucket(n.cfg.SubjectPrefix))
	if err != nil {
		return "", err
	}
	e, err := kv.Get(ctx, events.KVKey(id))
	if err != nil {
		return "", err
	}
	return string(e.Value()), nil
}
