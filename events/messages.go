package events

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"time"
)

// EmitMessage is the payload of a hub.emit subject: deliver Event to the
// sockets of the subject's room. Data is the single argument; Args, when
// set, is the whole argument list and wins over Data.
type EmitMessage struct {
	Event string          `json:"event"`
	Data  json.RawMessage `json:"data,omitempty"`
	Args  json.RawMessage `json:"args,omitempty"`
	// Except lists socket ids that must not receive the event (the sender
	// of a relayed message). Optional.
	Except []string `json:"except,omitempty"`
	// Node is the id of the hub node that published the message, if any.
	// That node has delivered it locally already and skips it.
	Node string `json:"node,omitempty"`
	// TS is the publish time in Unix nanoseconds, when known; hub nodes use
	// it to measure relay latency.
	TS int64 `json:"ts,omitempty"`
}

// RecvEnvelope is the payload a hub node publishes on a hub.recv subject
// for a client event that no built-in handler takes.
type RecvEnvelope struct {
	ID      string            `json:"id"`
	NS      string            `json:"ns"`
	Event   string            `json:"event"`
	Socket  string            `json:"socket"`
	User    *string           `json:"user"`
	Roles   []string          `json:"roles"`
	Session *string           `json:"session"`
	Node    string            `json:"node"`
	Time    time.Time         `json:"time"`
	Args    []json.RawMessage `json:"args"`
}

// UnavailableAck is the ack a client receives when no backend answered its
// request in time.
var UnavailableAck = json.RawMessage(`{"error":"unavailable"}`)

// Control operations carried on hub.ctl.<op>.
const (
	CtlDisconnect = "disconnect"
	CtlJoin       = "join"
	CtlLeave      = "leave"
	CtlCount      = "count"
	CtlNode       = "node"
)

// CtlMessage selects sockets on every hub node for a control operation.
// At least one selector (UserID, SessionID, SocketID, IP) is required for
// disconnect, join and leave; count takes none. NS limits the operation to
// one namespace ("" = all).
type CtlMessage struct {
	UserID    string `json:"user_id,omitempty"`
	SessionID string `json:"session_id,omitempty"`
	SocketID  string `json:"socket_id,omitempty"`
	IP        string `json:"ip,omitempty"`
	NS        string `json:"ns,omitempty"`
	Room      string `json:"room,omitempty"`
	Reason    string `json:"reason,omitempty"`
	// Origin is the node that sent the request; informational.
	Origin string `json:"origin,omitempty"`
}

// HasSelector reports whether m names any socket.
func (m CtlMessage) HasSelector() bool {
	return m.UserID != "" || m.SessionID != "" || m.SocketID != "" || m.IP != ""
}

// CtlReply is each hub node's answer to a control request.
type CtlReply struct {
	Node string `json:"node"`
	// Count is the number of sockets matched (disconnected, joined, left)
	// or, for count, connected.
	Count int `json:"count"`
	// Users is, for count, the number of distinct authenticated users.
	Users int `json:"users,omitempty"`
	// UserIDs are, for count, the ids of those users, so that a user with
	// sockets on several nodes is counted once cluster-wide.
	UserIDs []string `json:"user_ids,omitempty"`
	// Namespaces is, for count, the sockets per namespace.
	Namespaces map[string]int `json:"namespaces,omitempty"`
	Error      string         `json:"error,omitempty"`
}

// NodeInfo is the heartbeat each hub node publishes on hub.ctl.node.
type NodeInfo struct {
	Node        string    `json:"node"`
	Connections int       `json:"connections"`
	Started     time.Time `json:"started"`
	// Hello asks every other node to announce itself at once.
	Hello bool `json:"hello,omitempty"`
	// Leaving says the node is shutting down.
	Leaving bool `json:"leaving,omitempty"`
}

// NewID returns a random 128-bit identifier in hex.
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	return hex.EncodeToString(b[:])
}
