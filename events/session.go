package events

import (
	"strings"
	"time"
)

// Event domains.
const (
	DomainSession  = "session"
	DomainSecurity = "security"
	DomainMedia    = "media"
)

// Session event names.
const (
	SessionCreated   = "created"
	SessionRefreshed = "refreshed"
	SessionEnded     = "ended"
	SessionRevoked   = "revoked"
)

// SessionCreatedData is the data of medianest.session.created.v1.
type SessionCreatedData struct {
	SessionID   string    `json:"session_id"`
	UserID      string    `json:"user_id"`
	ExpiresAt   time.Time `json:"expires_at"`
	TokenSHA256 string    `json:"token_sha256,omitempty"`
	IP          string    `json:"ip,omitempty"`
	UserAgent   string    `json:"user_agent,omitempty"`
}

// SessionRefreshedData is the data of medianest.session.refreshed.v1.
type SessionRefreshedData struct {
	SessionID string    `json:"session_id"`
	ExpiresAt time.Time `json:"expires_at"`
}

// SessionEndedData is the data of medianest.session.ended.v1.
type SessionEndedData struct {
	SessionID string `json:"session_id"`
}

// SessionRevokedData is the data of medianest.session.revoked.v1: exactly
// one of SessionID, UserID and JTI, and a reason.
type SessionRevokedData struct {
	SessionID string `json:"session_id,omitempty"`
	UserID    string `json:"user_id,omitempty"`
	JTI       string `json:"jti,omitempty"`
	Reason    string `json:"reason"`
}

// Kind and Value name the revocation's target: ("session", id),
// ("user", id) or ("jti", id).
func (d SessionRevokedData) Kind() (kind, value string) {
	switch {
	case d.SessionID != "":
		return "session", d.SessionID
	case d.UserID != "":
		return "user", d.UserID
	default:
		return "jti", d.JTI
	}
}

// SecuritySessionRevokedData is the data of
// medianest.security.session_revoked.v1: what a revocation closed.
type SecuritySessionRevokedData struct {
	SessionID     string `json:"session_id,omitempty"`
	UserID        string `json:"user_id,omitempty"`
	JTI           string `json:"jti,omitempty"`
	Reason        string `json:"reason"`
	SocketsClosed int    `json:"sockets_closed"`
}

// CtlRevoke is the control operation that applies a session change
// (revocation or end) on every hub node at once; its payload is a
// [RevokeMessage] and each node replies with a [CtlReply] whose Count is the
// number of sockets it closed for that event.
const CtlRevoke = "revoke"

// RevokeMessage carries a session change to the hub nodes.
type RevokeMessage struct {
	// EventID is the id of the session event; nodes remember what they
	// closed for it, so asking twice does not count twice.
	EventID string `json:"event_id"`
	// Type is "revoked" or "ended".
	Type    string             `json:"type"`
	Revoked SessionRevokedData `json:"revoked"`
	// At is when the revocation was made; tokens of a revoked user issued
	// after it stay valid.
	At time.Time `json:"at"`
}

// StreamName is the JetStream stream of a domain's events under a prefix:
// MEDIANEST_SESSION for "medianest" and "session".
func StreamName(prefix, domain string) string {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	return strings.ToUpper(prefix + "_" + domain)
}

// DeadLetter is the subject where invalid events of a domain go, with the
// reason in the [HeaderDeadLetterReason] header.
func (s Subjects) DeadLetter(domain string) string {
	return s.prefix() + ".deadletter." + EscapeToken(domain)
}

// DeadLetters is the wildcard subject of every dead letter.
func (s Subjects) DeadLetters() string { return s.prefix() + ".deadletter.>" }

// Headers of dead-lettered messages.
const (
	HeaderDeadLetterReason  = "Medianest-Dead-Letter-Reason"
	HeaderDeadLetterSubject = "Medianest-Dead-Letter-Subject"
	HeaderDeadLetterStream  = "Medianest-Dead-Letter-Stream-Seq"
)
