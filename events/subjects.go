package events

import (
	"errors"
	"fmt"
	"strings"
)

// DefaultPrefix is the subject prefix used when MEDIANEST_SUBJECT_PREFIX is unset.
const DefaultPrefix = "medianest"

// RootNamespaceToken is the subject token that stands for the namespace "/".
const RootNamespaceToken = "_root"

// AllRoom is the room token of a hub.emit subject that addresses every socket
// of a namespace.
const AllRoom = "_all"

// ErrEmptyToken is returned when a subject token would be empty.
var ErrEmptyToken = errors.New("empty subject token")

// ErrBadSubject is returned when a subject does not have the expected shape.
var ErrBadSubject = errors.New("malformed subject")

const hexDigits = "0123456789ABCDEF"

// needsEscape reports whether b may not appear literally in a subject token:
// the NATS separators and wildcards, our escape character, white space and
// control bytes.
func needsEscape(b byte) bool {
	switch b {
	case '.', '*', '>', '%', ' ', 0x7f:
		return true
	}
	return b < 0x20
}

// EscapeToken escapes s so that it is exactly one NATS subject token:
// '.', '*', '>', '%', white space and control bytes become %XX; every other
// byte is kept, so "user:42" stays "user:42". An empty s yields "".
func EscapeToken(s string) string {
	n := 0
	for i := 0; i < len(s); i++ {
		if needsEscape(s[i]) {
			n++
		}
	}
	if n == 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 2*n)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if needsEscape(c) {
			b.WriteByte('%')
			b.WriteByte(hexDigits[c>>4])
			b.WriteByte(hexDigits[c&0xf])
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

// UnescapeToken reverses [EscapeToken].
func UnescapeToken(tok string) (string, error) {
	if strings.IndexByte(tok, '%') < 0 {
		return tok, nil
	}
	var b strings.Builder
	b.Grow(len(tok))
	for i := 0; i < len(tok); i++ {
		c := tok[i]
		if c != '%' {
			b.WriteByte(c)
			continue
		}
		if i+2 >= len(tok) {
			return "", fmt.Errorf("token %q: truncated escape at %d: %w", tok, i, ErrBadSubject)
		}
		hi, ok1 := unhex(tok[i+1])
		lo, ok2 := unhex(tok[i+2])
		if !ok1 || !ok2 {
			return "", fmt.Errorf("token %q: bad escape at %d: %w", tok, i, ErrBadSubject)
		}
		b.WriteByte(hi<<4 | lo)
		i += 2
	}
	return b.String(), nil
}

// NamespaceToken is the subject token of a Socket.io namespace: the name
// without its leading slash, escaped, and "_root" for "/".
func NamespaceToken(ns string) string {
	ns = strings.TrimPrefix(ns, "/")
	if ns == "" {
		return RootNamespaceToken
	}
	return EscapeToken(ns)
}

// NamespaceFromToken reverses [NamespaceToken].
func NamespaceFromToken(tok string) (string, error) {
	if tok == RootNamespaceToken {
		return "/", nil
	}
	if tok == "" {
		return "", ErrEmptyToken
	}
	s, err := UnescapeToken(tok)
	if err != nil {
		return "", err
	}
	return "/" + s, nil
}

// Subjects builds the subjects of the public contract under one prefix.
// The zero value uses [DefaultPrefix].
type Subjects struct {
	// Prefix is the first token of every subject; "" means [DefaultPrefix].
	Prefix string
}

func (s Subjects) prefix() string {
	if s.Prefix == "" {
		return DefaultPrefix
	}
	return s.Prefix
}

// Emit is the subject on which backends ask every hub node to deliver an
// event to a room of a namespace ([AllRoom] for the whole namespace).
func (s Subjects) Emit(ns, room string) (string, error) {
	if room == "" {
		return "", fmt.Errorf("emit room: %w", ErrEmptyToken)
	}
	return s.prefix() + ".hub.emit." + NamespaceToken(ns) + "." + EscapeToken(room), nil
}

// EmitAll is the wildcard subject hub nodes subscribe to for emits.
func (s Subjects) EmitAll() string { return s.prefix() + ".hub.emit.>" }

// ParseEmit splits a hub.emit subject into its namespace and room.
func (s Subjects) ParseEmit(subject string) (ns, room string, err error) {
	head := s.prefix() + ".hub.emit."
	rest, ok := strings.CutPrefix(subject, head)
	if !ok {
		return "", "", fmt.Errorf("subject %q: not under %q: %w", subject, head, ErrBadSubject)
	}
	nsTok, roomTok, ok := strings.Cut(rest, ".")
	if !ok || roomTok == "" || strings.IndexByte(roomTok, '.') >= 0 {
		return "", "", fmt.Errorf("subject %q: want <ns>.<room>: %w", subject, ErrBadSubject)
	}
	if ns, err = NamespaceFromToken(nsTok); err != nil {
		return "", "", fmt.Errorf("subject %q: namespace: %w", subject, err)
	}
	if room, err = UnescapeToken(roomTok); err != nil {
		return "", "", fmt.Errorf("subject %q: room: %w", subject, err)
	}
	return ns, room, nil
}

// Recv is the subject on which a hub node hands a client event to the backends.
func (s Subjects) Recv(ns, event string) (string, error) {
	if event == "" {
		return "", fmt.Errorf("recv event: %w", ErrEmptyToken)
	}
	return s.prefix() + ".hub.recv." + NamespaceToken(ns) + "." + EscapeToken(event), nil
}

// RecvAll is the wildcard subject for every client event of every namespace.
func (s Subjects) RecvAll() string { return s.prefix() + ".hub.recv.>" }

// Ctl is the subject of a cluster-wide operation on every hub node.
func (s Subjects) Ctl(op string) string { return s.prefix() + ".hub.ctl." + EscapeToken(op) }

// CtlAll is the wildcard subject hub nodes subscribe to for operations.
func (s Subjects) CtlAll() string { return s.prefix() + ".hub.ctl.>" }

// Event is the subject of a durable event of a domain ("security",
// "session", "media") and name ("auth_failed", "download.progress": a dot
// in a name separates tokens, as the catalogue's subjects do).
func (s Subjects) Event(domain, name string) string {
	parts := strings.Split(name, ".")
	for i, p := range parts {
		parts[i] = EscapeToken(p)
	}
	return s.prefix() + ".events." + EscapeToken(domain) + "." + strings.Join(parts, ".")
}

// Events is the wildcard subject of every durable event of a domain.
func (s Subjects) Events(domain string) string {
	return s.prefix() + ".events." + EscapeToken(domain) + ".>"
}

// Alert is the subject of an alert of a severity and rule.
func (s Subjects) Alert(severity, rule string) string {
	return s.prefix() + ".alerts." + EscapeToken(severity) + "." + EscapeToken(rule)
}

// Alerts is the wildcard subject of every alert.
func (s Subjects) Alerts() string { return s.prefix() + ".alerts.>" }
