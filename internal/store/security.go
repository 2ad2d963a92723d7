package store

import (
	"context"
	"fmt"
	"time"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect"
	"github.com/uptrace/bun/dialect/pgdialect"
)

// AuditRecord is one security event in the audit log.
type AuditRecord struct {
	bun.BaseModel `bun:"table:security_audit"`

	ID         string    `bun:"id,pk" json:"id"`
	Type       string    `bun:"type,notnull" json:"type"`
	OccurredAt time.Time `bun:"occurred_at,notnull" json:"time"`
	IP         string    `bun:"ip,notnull" json:"ip,omitempty"`
	UserID     string    `bun:"user_id,notnull" json:"user_id,omitempty"`
	SessionID  string    `bun:"session_id,notnull" json:"session_id,omitempty"`
	Namespace  string    `bun:"namespace,notnull" json:"namespace,omitempty"`
	Code       string    `bun:"code,notnull" json:"code,omitempty"`
	Data       string    `bun:"data,notnull" json:"data"`
	StreamSeq  int64     `bun:"stream_seq,notnull" json:"-"`
}

// AlertRecord is an alert as stored; Count grows while the window stays open.
type AlertRecord struct {
	bun.BaseModel `bun:"table:alerts"`

	ID        string    `bun:"id,pk" json:"id"`
	Rule      string    `bun:"rule,notnull" json:"rule"`
	Severity  string    `bun:"severity,notnull" json:"severity"`
	Subject   string    `bun:"subject,notnull" json:"subject"`
	Summary   string    `bun:"summary,notnull" json:"summary"`
	Count     int       `bun:"count,notnull" json:"count"`
	FirstSeen time.Time `bun:"first_seen,notnull" json:"first_seen"`
	LastSeen  time.Time `bun:"last_seen,notnull" json:"last_seen"`
	EventIDs  string    `bun:"event_ids,notnull" json:"-"`
	Action    string    `bun:"action,notnull" json:"action,omitempty"`
}

// IPBlock refuses an IP on every hub node until ExpiresAt.
type IPBlock struct {
	bun.BaseModel `bun:"table:ip_blocks"`

	IP        string    `bun:"ip,pk" json:"ip"`
	Reason    string    `bun:"reason,notnull" json:"reason"`
	AlertID   string    `bun:"alert_id,notnull" json:"alert_id,omitempty"`
	CreatedAt time.Time `bun:"created_at,notnull" json:"created_at"`
	ExpiresAt time.Time `bun:"expires_at,notnull" json:"expires_at"`
}

// InsertAudit stores audit records, skipping ids already stored, and
// returns the ids that were new.
func InsertAudit(ctx context.Context, db bun.IDB, recs []AuditRecord) (map[string]bool, error) {
	fresh := make(map[string]bool, len(recs))
	if len(recs) == 0 {
		return fresh, nil
	}
	var ids []string
	var err error
	if db.Dialect().Name() == dialect.PG {
		err = insertAuditPG(ctx, db, recs, &ids)
	} else {
		err = db.NewInsert().Model(&recs).On("CONFLICT (id) DO NOTHING").Returning("id").Scan(ctx, &ids)
	}
	if err != nil {
		return nil, fmt.Errorf("store: insert %d audit records: %w", len(recs), err)
	}
	for _, id := range ids {
		fresh[id] = true
	}
	return fresh, nil
}

// insertAuditPG sends a batch as one array per column and unnests them in
// the server: PostgreSQL reads ten array values far faster than a VALUES
// list of ten literals per row, which it parses and plans row by row.
func insertAuditPG(ctx context.Context, db bun.IDB, recs []AuditRecord, ids *[]string) error {
	n := len(recs)
	var (
		id, typ, ip, user, sess, ns, code, data = make([]string, n), make([]string, n), make([]string, n), make([]string, n),
			make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		at  = make([]time.Time, n)
		seq = make([]int64, n)
	)
	for i, r := range recs {
		id[i], typ[i], at[i], ip[i], user[i], sess[i], ns[i], code[i], data[i], seq[i] =
			r.ID, r.Type, r.OccurredAt, r.IP, r.UserID, r.SessionID, r.Namespace, r.Code, r.Data, r.StreamSeq
	}
	return db.NewRaw(`INSERT INTO security_audit (id, type, occurred_at, ip, user_id, session_id, namespace, code, data, stream_seq)
SELECT * FROM unnest(?::varchar[], ?::varchar[], ?::timestamp[], ?::varchar[], ?::varchar[], ?::varchar[], ?::varchar[], ?::varchar[], ?::text[], ?::bigint[])
ON CONFLICT (id) DO NOTHING RETURNING id`,
		pgdialect.Array(id), pgdialect.Array(typ), pgdialect.Array(at), pgdialect.Array(ip), pgdialect.Array(user),
		pgdialect.Array(sess), pgdialect.Array(ns), pgdialect.Array(code), pgdialect.Array(data), pgdialect.Array(seq),
	).Scan(ctx, ids)
}

// UpsertAlerts stores alerts or updates their count, last sighting and
// action, in one statement.
func UpsertAlerts(ctx context.Context, db bun.IDB, as []AlertRecord) error {
	_, err := db.NewInsert().Model(&as).
		On("CONFLICT (id) DO UPDATE").
		Set("count = EXCLUDED.count").
		Set("last_seen = EXCLUDED.last_seen").
		Set("event_ids = EXCLUDED.event_ids").
		Set("action = EXCLUDED.action").
		Exec(ctx)
	if err != nil {
		return fmt.Errorf("store: upsert %d alerts: %w", len(as), err)
	}
	return nil
}

// UpsertBlock stores or extends an IP block.
func UpsertBlock(ctx context.Context, db bun.IDB, b *IPBlock) error {
	_, err := db.NewInsert().Model(b).
		On("CONFLICT (ip) DO UPDATE").
		Set("reason = EXCLUDED.reason").
		Set("alert_id = EXCLUDED.alert_id").
		Set("expires_at = EXCLUDED.expires_at").
		Exec(ctx)
	if err != nil {
		return fmt.Errorf("store: block %s: %w", b.IP, err)
	}
	return nil
}

// ActiveBlocks returns the IP blocks in force at now.
func (s *Store) ActiveBlocks(ctx context.Context, now time.Time) ([]IPBlock, error) {
	var out []IPBlock
	if err := s.DB.NewSelect().Model(&out).Where("expires_at > ?", now.UTC()).Order("ip").Scan(ctx); err != nil {
		return nil, fmt.Errorf("store: read blocks: %w", err)
	}
	return out, nil
}

// LiftBlock removes an IP block; found is false when there was none.
func (s *Store) LiftBlock(ctx context.Context, ip string) (bool, error) {
	res, err := s.DB.NewDelete().Model((*IPBlock)(nil)).Where("ip = ?", ip).Exec(ctx)
	if err != nil {
		return false, fmt.Errorf("store: lift block %s: %w", ip, err)
	}
	n, _ := res.RowsAffected()
	return n > 0, nil
}

// Filter selects audit records or alerts. Zero fields do not filter.
type Filter struct {
	IP     string
	UserID string
	Rule   string
	Type   string
	Since  time.Time
	// Before and BeforeID page backwards: only entries older than Before,
	// or as old and with a smaller id (entries of one instant are ordered
	// by id, so a page boundary never skips one).
	Before   time.Time
	BeforeID string
	Limit    int
}

func (f Filter) limit() int {
	if f.Limit <= 0 || f.Limit > 1000 {
		return 100
	}
	return f.Limit
}

// AuditLogSecurity returns audit records, newest first.
func (s *Store) AuditLogSecurity(ctx context.Context, f Filter) ([]AuditRecord, error) {
	var out []AuditRecord
	q := s.DB.NewSelect().Model(&out).Order("occurred_at DESC", "id DESC").Limit(int64(f.limit()))
	if f.IP != "" {
		q = q.Where("ip = ?", f.IP)
	}
	if f.UserID != "" {
		q = q.Where("user_id = ?", f.UserID)
	}
	if f.Type != "" {
		q = q.Where("type = ?", f.Type)
	}
	if !f.Since.IsZero() {
		q = q.Where("occurred_at >= ?", f.Since.UTC())
	}
	if !f.Before.IsZero() {
		q = q.Where("(occurred_at < ? OR (occurred_at = ? AND id < ?))", f.Before.UTC(), f.Before.UTC(), f.BeforeID)
	}
	if err := q.Scan(ctx); err != nil {
		return nil, fmt.Errorf("store: read audit log: %w", err)
	}
	return out, nil
}

// Alerts returns alerts, newest first. IP and UserID match the alert's subject.
func (s *Store) Alerts(ctx context.Context, f Filter) ([]AlertRecord, error) {
	var out []AlertRecord
	q := s.DB.NewSelect().Model(&out).Order("first_seen DESC", "id DESC").Limit(int64(f.limit()))
	if f.Rule != "" {
		q = q.Where("rule = ?", f.Rule)
	}
	if f.IP != "" {
		q = q.Where("subject = ?", "ip:"+f.IP)
	}
	if f.UserID != "" {
		q = q.Where("subject = ?", "user:"+f.UserID)
	}
	if !f.Since.IsZero() {
		q = q.Where("first_seen >= ?", f.Since.UTC())
	}
	if !f.Before.IsZero() {
		q = q.Where("(first_seen < ? OR (first_seen = ? AND id < ?))", f.Before.UTC(), f.Before.UTC(), f.BeforeID)
	}
	if err := q.Scan(ctx); err != nil {
		return nil, fmt.Errorf("store: read alerts: %w", err)
	}
	return out, nil
}

// CountAudit is the number of audit records (for the benchmark's check).
func (s *Store) CountAudit(ctx context.Context) (int64, error) {
	return s.DB.NewSelect().Model((*AuditRecord)(nil)).Count(ctx)
}
