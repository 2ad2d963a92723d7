// Package sessions is a hub node's in-memory view of sessions and
// revocations. It answers, without a database round trip in the common
// case, whether a verified token may be used: in strict mode its session
// must be known, active and unexpired; in both modes it must not be
// revoked (by session, by user up to the revocation time, or by jti).
//
// The cache is fed by session events (see [Cache.Apply]), loaded with the
// persisted revocations at start, and falls back to a [Lookup] on a miss.
// A Cache is safe for concurrent use.
package sessions

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/medianest/hub/events"
	"github.com/medianest/hub/hub/auth"
)

// Modes of the session check.
const (
	Strict    = "strict"
	Stateless = "stateless"
)

// CodeSessionUnavailable refuses a connection whose session could not be
// checked because the database did not answer (strict mode fails closed).
const CodeSessionUnavailable = "session_unavailable"

// Record is what the cache knows of one session.
type Record struct {
	ID          string
	UserID      string
	TokenSHA256 string
	ExpiresAt   time.Time
	Ended       bool
	Revoked     bool
}

// Lookup reads sessions from durable storage on a cache miss. Both methods
// return nil, nil when the session does not exist.
type Lookup interface {
	SessionByID(ctx context.Context, id string) (*Record, error)
	SessionByTokenSHA(ctx context.Context, sha string) (*Record, error)
}

// Revocation is a persisted revocation loaded at start.
type Revocation struct {
	Kind      string // "session", "user" or "jti"
	Value     string
	RevokedAt time.Time
	ExpiresAt time.Time
}

type userRevocation struct {
	at, until time.Time
}

// Cache is the node's session view.
type Cache struct {
	mode        string
	lookup      Lookup
	maxLifetime time.Duration

	// sync, if set, brings the cache up to date with the session stream
	// before a miss goes to the lookup.
	sync func(ctx context.Context) error

	mu          sync.RWMutex
	sessions    map[string]*Record
	bySHA       map[string]string
	revSessions map[string]time.Time // until
	revJTI      map[string]time.Time // until
	revUsers    map[string]userRevocation
}

// New returns a cache. maxLifetime is the longest token lifetime: how long
// a revocation matters.
func New(mode string, lookup Lookup, maxLifetime time.Duration) *Cache {
	return &Cache{
		mode: mode, lookup: lookup, maxLifetime: maxLifetime,
		sessions:    make(map[string]*Record),
		bySHA:       make(map[string]string),
		revSessions: make(map[string]time.Time),
		revJTI:      make(map[string]time.Time),
		revUsers:    make(map[string]userRevocation),
	}
}

// SetSync installs the function that catches the cache up with every
// session event already stored, run on a miss before the lookup. Call it
// before the cache is used.
func (c *Cache) SetSync(fn func(ctx context.Context) error) { c.sync = fn }

// Mode is "strict" or "stateless".
func (c *Cache) Mode() string { return c.mode }

// Load adds persisted revocations.
func (c *Cache) Load(revs []Revocation) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range revs {
		c.addRevocation(r.Kind, r.Value, r.RevokedAt, r.ExpiresAt)
	}
}

func (c *Cache) addRevocation(kind, value string, at, until time.Time) {
	switch kind {
	case "session":
		if until.After(c.revSessions[value]) {
			c.revSessions[value] = until
		}
		if rec := c.sessions[value]; rec != nil {
			rec.Revoked = true
		}
	case "jti":
		if until.After(c.revJTI[value]) {
			c.revJTI[value] = until
		}
	case "user":
		if cur, ok := c.revUsers[value]; !ok || at.After(cur.at) {
			c.revUsers[value] = userRevocation{at: at, until: until}
		}
	}
}

// Check decides whether a verified identity may connect now. It returns
// the session id the token belongs to ("" when unknown in stateless mode)
// or an [*auth.Error] with code session_invalid, session_revoked or
// session_unavailable.
func (c *Cache) Check(ctx context.Context, id *auth.Identity, now time.Time) (string, error) {
	if c.revoked(id, id.SessionID, now) {
		return "", &auth.Error{Code: auth.CodeSessionRevoked}
	}
	if c.mode != Strict {
		return id.SessionID, nil
	}
	rec, err := c.find(ctx, id)
	if err != nil {
		return "", &auth.Error{Code: CodeSessionUnavailable, Cause: err}
	}
	switch {
	case rec == nil:
		return "", &auth.Error{Code: auth.CodeSessionInvalid, Cause: errors.New("unknown session")}
	case rec.Revoked:
		return "", &auth.Error{Code: auth.CodeSessionRevoked}
	case rec.UserID != id.UserID:
		return "", &auth.Error{Code: auth.CodeSessionInvalid, Cause: errors.New("session belongs to another user")}
	case rec.Ended:
		return "", &auth.Error{Code: auth.CodeSessionInvalid, Cause: errors.New("session ended")}
	case !now.Before(rec.ExpiresAt):
		return "", &auth.Error{Code: auth.CodeSessionInvalid, Cause: errors.New("session expired")}
	}
	if id.SessionID == "" && c.revoked(id, rec.ID, now) {
		return "", &auth.Error{Code: auth.CodeSessionRevoked}
	}
	return rec.ID, nil
}

// Valid reports whether credentials admitted earlier are still good at
// now: not revoked and, in strict mode, their session not ended or revoked
// as far as the cache knows.
func (c *Cache) Valid(id *auth.Identity, sessionID string, now time.Time) bool {
	if c.revoked(id, sessionID, now) {
		return false
	}
	if c.mode != Strict || sessionID == "" {
		return true
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	rec := c.sessions[sessionID]
	return rec == nil || (!rec.Ended && !rec.Revoked)
}

// Revoked reports whether a verified identity is revoked, without asking
// for its session (the admin API's service tokens have none).
func (c *Cache) Revoked(id *auth.Identity, now time.Time) bool {
	return c.revoked(id, id.SessionID, now)
}

func (c *Cache) revoked(id *auth.Identity, sessionID string, now time.Time) bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if sessionID != "" {
		if until, ok := c.revSessions[sessionID]; ok && now.Before(until) {
			return true
		}
	}
	if id.JTI != "" {
		if until, ok := c.revJTI[id.JTI]; ok && now.Before(until) {
			return true
		}
	}
	if r, ok := c.revUsers[id.UserID]; ok && now.Before(r.until) && issuedBy(id, r.at) {
		return true
	}
	return false
}

// issuedBy reports whether a token was issued at or before t (a token
// without iat counts as issued before any revocation).
func issuedBy(id *auth.Identity, t time.Time) bool {
	return id.IssuedAt.IsZero() || !id.IssuedAt.After(t)
}

// find returns the token's session from the cache or, on a miss, from the
// lookup (caching what it finds).
func (c *Cache) find(ctx context.Context, id *auth.Identity) (*Record, error) {
	if rec, ok := c.cached(id); ok {
		return rec, nil
	}
	if c.sync != nil {
		// A session announced just before this connect may not have been
		// applied yet: catch up with the stream, then look again.
		if err := c.sync(ctx); err == nil {
			if rec, ok := c.cached(id); ok {
				return rec, nil
			}
		}
	}
	if c.lookup == nil {
		return nil, nil
	}
	var (
		rec *Record
		err error
	)
	if id.SessionID != "" {
		rec, err = c.lookup.SessionByID(ctx, id.SessionID)
	} else {
		rec, err = c.lookup.SessionByTokenSHA(ctx, id.TokenSHA256)
	}
	if err != nil || rec == nil {
		return nil, err
	}
	c.mu.Lock()
	if _, revoked := c.revSessions[rec.ID]; revoked {
		rec.Revoked = true
	}
	c.put(rec)
	cp := *rec
	c.mu.Unlock()
	return &cp, nil
}

func (c *Cache) cached(id *auth.Identity) (*Record, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	var rec *Record
	if id.SessionID != "" {
		rec = c.sessions[id.SessionID]
	} else if sid, ok := c.bySHA[id.TokenSHA256]; ok {
		rec = c.sessions[sid]
	}
	if rec == nil {
		return nil, false
	}
	cp := *rec
	return &cp, true
}

func (c *Cache) put(rec *Record) {
	if old := c.sessions[rec.ID]; old != nil && old.TokenSHA256 != "" && old.TokenSHA256 != rec.TokenSHA256 {
		delete(c.bySHA, old.TokenSHA256)
	}
	c.sessions[rec.ID] = rec
	if rec.TokenSHA256 != "" {
		c.bySHA[rec.TokenSHA256] = rec.ID
	}
}

// Target selects the sockets a session change closes.
type Target struct {
	SessionID string
	UserID    string
	// IssuedBy limits a user target to tokens issued at or before it.
	IssuedBy time.Time
	JTI      string
	Reason   string
	Code     string // session_revoked or session_invalid
}

// Matches reports whether a socket with identity id and resolved session
// sessionID is selected.
func (t Target) Matches(id *auth.Identity, sessionID string) bool {
	switch {
	case t.SessionID != "":
		return sessionID == t.SessionID || id.SessionID == t.SessionID
	case t.UserID != "":
		return id.UserID == t.UserID && issuedBy(id, t.IssuedBy)
	case t.JTI != "":
		return id.JTI == t.JTI
	}
	return false
}

// Apply feeds one session event into the cache. It returns the sockets to
// close, if the event closes any.
func (c *Cache) Apply(ev events.Event) (*Target, error) {
	name := ev.Type
	switch name {
	case events.TypeName(events.DomainSession, events.SessionCreated):
		var d events.SessionCreatedData
		if err := json.Unmarshal(ev.Data, &d); err != nil || d.SessionID == "" || d.UserID == "" {
			return nil, fmt.Errorf("sessions: bad %s data: %v", name, err)
		}
		c.mu.Lock()
		rec := &Record{ID: d.SessionID, UserID: d.UserID, TokenSHA256: d.TokenSHA256, ExpiresAt: d.ExpiresAt}
		if old := c.sessions[d.SessionID]; old != nil {
			rec.Ended, rec.Revoked = old.Ended, old.Revoked
		}
		if _, revoked := c.revSessions[d.SessionID]; revoked {
			rec.Revoked = true
		}
		c.put(rec)
		c.mu.Unlock()
		return nil, nil
	case events.TypeName(events.DomainSession, events.SessionRefreshed):
		var d events.SessionRefreshedData
		if err := json.Unmarshal(ev.Data, &d); err != nil || d.SessionID == "" {
			return nil, fmt.Errorf("sessions: bad %s data: %v", name, err)
		}
		c.mu.Lock()
		if rec := c.sessions[d.SessionID]; rec != nil {
			rec.ExpiresAt = d.ExpiresAt
		}
		c.mu.Unlock()
		return nil, nil
	case events.TypeName(events.DomainSession, events.SessionEnded):
		var d events.SessionEndedData
		if err := json.Unmarshal(ev.Data, &d); err != nil || d.SessionID == "" {
			return nil, fmt.Errorf("sessions: bad %s data: %v", name, err)
		}
		c.mu.Lock()
		if rec := c.sessions[d.SessionID]; rec != nil {
			rec.Ended = true
		} else {
			c.sessions[d.SessionID] = &Record{ID: d.SessionID, Ended: true, ExpiresAt: ev.Time.Add(c.maxLifetime)}
		}
		c.mu.Unlock()
		return &Target{SessionID: d.SessionID, Reason: "session ended", Code: auth.CodeSessionInvalid}, nil
	case events.TypeName(events.DomainSession, events.SessionRevoked):
		var d events.SessionRevokedData
		if err := json.Unmarshal(ev.Data, &d); err != nil {
			return nil, fmt.Errorf("sessions: bad %s data: %w", name, err)
		}
		return c.Revoke(d, ev.Time), nil
	}
	return nil, nil
}

// Revoke records a revocation made at at and returns the sockets it closes.
func (c *Cache) Revoke(d events.SessionRevokedData, at time.Time) *Target {
	kind, value := d.Kind()
	if value == "" {
		return nil
	}
	c.mu.Lock()
	c.addRevocation(kind, value, at, at.Add(c.maxLifetime))
	c.mu.Unlock()
	t := &Target{Reason: d.Reason, Code: auth.CodeSessionRevoked}
	switch kind {
	case "session":
		t.SessionID = value
	case "user":
		t.UserID, t.IssuedBy = value, at
	default:
		t.JTI = value
	}
	return t
}

// Sweep forgets sessions and revocations that no longer matter.
func (c *Cache) Sweep(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, rec := range c.sessions {
		if now.After(rec.ExpiresAt.Add(c.maxLifetime)) {
			delete(c.sessions, id)
			if rec.TokenSHA256 != "" {
				delete(c.bySHA, rec.TokenSHA256)
			}
		}
	}
	for k, until := range c.revSessions {
		if now.After(until) {
			delete(c.revSessions, k)
		}
	}
	for k, until := range c.revJTI {
		if now.After(until) {
			delete(c.revJTI, k)
		}
	}
	for k, r := range c.revUsers {
		if now.After(r.until) {
			delete(c.revUsers, k)
		}
	}
}

// Len reports the number of cached sessions and revocations.
func (c *Cache) Len() (sessions, revocations int) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.sessions), len(c.revSessions) + len(c.revJTI) + len(c.revUsers)
}
