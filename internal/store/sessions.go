package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/uptrace/bun"
)

// Session is a login session as the backends announce it.
type Session struct {
	bun.BaseModel `bun:"table:sessions"`

	ID           string       `bun:"id,pk"`
	UserID       string       `bun:"user_id,notnull"`
	TokenSHA256  *string      `bun:"token_sha256"`
	CreatedAt    time.Time    `bun:"created_at,notnull"`
	ExpiresAt    time.Time    `bun:"expires_at,notnull"`
	LastSeenAt   bun.NullTime `bun:"last_seen_at"`
	IP           string       `bun:"ip,notnull"`
	UserAgent    string       `bun:"user_agent,notnull"`
	EndedAt      bun.NullTime `bun:"ended_at"`
	RevokedAt    bun.NullTime `bun:"revoked_at"`
	RevokeReason string       `bun:"revoke_reason,notnull"`
}

// Active reports whether the session may be used at now.
func (s *Session) Active(now time.Time) bool {
	return s.EndedAt.IsZero() && s.RevokedAt.IsZero() && now.Before(s.ExpiresAt)
}

// Revocation kinds.
const (
	RevokeSession = "session"
	RevokeUser    = "user"
	RevokeJTI     = "jti"
)

// Revocation refuses a session, a user's tokens issued up to RevokedAt, or
// one token, until ExpiresAt (after which no token it could match is still
// valid).
type Revocation struct {
	bun.BaseModel `bun:"table:revocations"`

	Kind      string    `bun:"kind,pk"`
	Value     string    `bun:"value,pk"`
	Reason    string    `bun:"reason,notnull"`
	RevokedAt time.Time `bun:"revoked_at,notnull"`
	ExpiresAt time.Time `bun:"expires_at,notnull"`
	EventID   string    `bun:"event_id,notnull"`
}

type processedEvent struct {
	bun.BaseModel `bun:"table:processed_events"`

	ID          string    `bun:"id,pk"`
	Consumer    string    `bun:"consumer,pk"`
	ProcessedAt time.Time `bun:"processed_at,notnull"`
}

// ApplyOnce runs fn in a transaction unless consumer already processed
// eventID; it records eventID in the same transaction. applied is false for
// a repeat.
func (s *Store) ApplyOnce(ctx context.Context, consumer, eventID string, fn func(ctx context.Context, tx bun.Tx) error) (applied bool, err error) {
	err = s.DB.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		res, err := tx.NewInsert().Model(&processedEvent{ID: eventID, Consumer: consumer, ProcessedAt: time.Now().UTC()}).
			On("CONFLICT DO NOTHING").Exec(ctx)
		if err != nil {
			return fmt.Errorf("record event %s: %w", eventID, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return nil
		}
		applied = true
		return fn(ctx, tx)
	})
	if err != nil {
		return false, fmt.Errorf("store: apply event %s: %w", eventID, err)
	}
	return applied, nil
}

// UpsertSession creates a session or updates its user, token hash, expiry
// and client details; an ended or revoked session stays so.
func UpsertSession(ctx context.Context, db bun.IDB, sess *Session) error {
	if sess.CreatedAt.IsZero() {
		sess.CreatedAt = time.Now().UTC()
	}
	_, err := db.NewInsert().Model(sess).
		On("CONFLICT (id) DO UPDATE").
		Set("user_id = EXCLUDED.user_id").
		Set("token_sha256 = EXCLUDED.token_sha256").
		Set("expires_at = EXCLUDED.expires_at").
		Set("ip = EXCLUDED.ip").
		Set("user_agent = EXCLUDED.user_agent").
		Exec(ctx)
	if err != nil {
		return fmt.Errorf("store: upsert session %s: %w", sess.ID, err)
	}
	return nil
}

// RefreshSession moves a session's expiry; found is false when it does not exist.
func RefreshSession(ctx context.Context, db bun.IDB, id string, expiresAt time.Time) (found bool, err error) {
	res, err := db.NewUpdate().Model((*Session)(nil)).Set("expires_at = ?", expiresAt.UTC()).Where("id = ?", id).Exec(ctx)
	if err != nil {
		return false, fmt.Errorf("store: refresh session %s: %w", id, err)
	}
	n, _ := res.RowsAffected()
	return n > 0, nil
}

// EndSession marks a session logged out. A session not seen yet gets a
// tombstone that keeps it ended when its session.created arrives late;
// until is when the tombstone may be cleaned up.
func EndSession(ctx context.Context, db bun.IDB, id string, at, until time.Time) error {
	tomb := &Session{ID: id, CreatedAt: at.UTC(), ExpiresAt: until.UTC(), EndedAt: bun.NullTime{Time: at.UTC()}}
	_, err := db.NewInsert().Model(tomb).
		On("CONFLICT (id) DO UPDATE").
		Set("ended_at = COALESCE(session.ended_at, EXCLUDED.ended_at)").
		Exec(ctx)
	if err != nil {
		return fmt.Errorf("store: end session %s: %w", id, err)
	}
	return nil
}

// Revoke records a revocation and, for a session, marks the session
// revoked (with a tombstone if it is not known yet). Of two revocations of
// the same target the later one wins, whatever order they are applied in.
func Revoke(ctx context.Context, db bun.IDB, r *Revocation) error {
	r.RevokedAt, r.ExpiresAt = r.RevokedAt.UTC(), r.ExpiresAt.UTC()
	newer := "EXCLUDED.revoked_at >= revocation.revoked_at"
	_, err := db.NewInsert().Model(r).
		On("CONFLICT (kind, value) DO UPDATE").
		Set("reason = CASE WHEN " + newer + " THEN EXCLUDED.reason ELSE revocation.reason END").
		Set("event_id = CASE WHEN " + newer + " THEN EXCLUDED.event_id ELSE revocation.event_id END").
		Set("revoked_at = CASE WHEN " + newer + " THEN EXCLUDED.revoked_at ELSE revocation.revoked_at END").
		Set("expires_at = CASE WHEN EXCLUDED.expires_at > revocation.expires_at THEN EXCLUDED.expires_at ELSE revocation.expires_at END").
		Exec(ctx)
	if err != nil {
		return fmt.Errorf("store: revoke %s %s: %w", r.Kind, r.Value, err)
	}
	if r.Kind == RevokeSession {
		tomb := &Session{ID: r.Value, CreatedAt: r.RevokedAt, ExpiresAt: r.ExpiresAt,
			RevokedAt: bun.NullTime{Time: r.RevokedAt}, RevokeReason: r.Reason}
		_, err = db.NewInsert().Model(tomb).
			On("CONFLICT (id) DO UPDATE").
			Set("revoked_at = COALESCE(session.revoked_at, EXCLUDED.revoked_at)").
			Set("revoke_reason = CASE WHEN session.revoked_at IS NULL THEN EXCLUDED.revoke_reason ELSE session.revoke_reason END").
			Exec(ctx)
		if err != nil {
			return fmt.Errorf("store: mark session %s revoked: %w", r.Value, err)
		}
	}
	return nil
}

// SessionByID returns a session, or nil when there is none.
func (s *Store) SessionByID(ctx context.Context, id string) (*Session, error) {
	return s.sessionWhere(ctx, "id = ?", id)
}

// SessionByTokenSHA returns the session of a token hash, or nil.
func (s *Store) SessionByTokenSHA(ctx context.Context, sha string) (*Session, error) {
	return s.sessionWhere(ctx, "token_sha256 = ?", sha)
}

func (s *Store) sessionWhere(ctx context.Context, where string, arg string) (*Session, error) {
	sess := new(Session)
	err := s.DB.NewSelect().Model(sess).Where(where, arg).Limit(1).Scan(ctx)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("store: read session: %w", err)
	}
	return sess, nil
}

// CreateSession stores a session directly (the dev token command).
func (s *Store) CreateSession(ctx context.Context, sess *Session) error {
	return UpsertSession(ctx, s.DB, sess)
}

// ActiveRevocations returns the revocations that still matter at now.
func (s *Store) ActiveRevocations(ctx context.Context, now time.Time) ([]Revocation, error) {
	var out []Revocation
	if err := s.DB.NewSelect().Model(&out).Where("expires_at > ?", now.UTC()).Scan(ctx); err != nil {
		return nil, fmt.Errorf("store: read revocations: %w", err)
	}
	return out, nil
}

// CleanupResult counts what Cleanup removed.
type CleanupResult struct {
	Sessions, Revocations, ProcessedEvents int64
}

// Cleanup removes sessions expired before now-keep, revocations that no
// longer matter, and idempotency records older than keepProcessed (which
// must be at least the event streams' retention, so a replay of the stream
// is still recognised).
func (s *Store) Cleanup(ctx context.Context, now time.Time, keep, keepProcessed time.Duration) (CleanupResult, error) {
	var r CleanupResult
	cutoff := now.Add(-keep).UTC()
	res, err := s.DB.NewDelete().Model((*Session)(nil)).Where("expires_at < ?", cutoff).Exec(ctx)
	if err != nil {
		return r, fmt.Errorf("store: clean sessions: %w", err)
	}
	r.Sessions, _ = res.RowsAffected()
	res, err = s.DB.NewDelete().Model((*Revocation)(nil)).Where("expires_at < ?", now.UTC()).Exec(ctx)
	if err != nil {
		return r, fmt.Errorf("store: clean revocations: %w", err)
	}
	r.Revocations, _ = res.RowsAffected()
	res, err = s.DB.NewDelete().Model((*processedEvent)(nil)).Where("processed_at < ?", now.Add(-keepProcessed).UTC()).Exec(ctx)
	if err != nil {
		return r, fmt.Errorf("store: clean processed events: %w", err)
	}
	r.ProcessedEvents, _ = res.RowsAffected()
	return r, nil
}
