// Package store opens the hub's database through bun — SQLite in the data
// directory by default (pure Go, no cgo), PostgreSQL for a postgres:// URL —
// runs the migrations of package schema under the migrator's lock, and
// offers the queries the hub needs. A Store is safe for concurrent use.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"
	"github.com/uptrace/bun/dialect/sqlitedialect"
	"github.com/uptrace/bun/driver/pgdriver"
	"github.com/uptrace/bun/migrate"
	"modernc.org/sqlite" // pure-Go SQLite driver "sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/medianest/hub/schema"
)

// Store is the hub's database.
type Store struct {
	DB      *bun.DB
	Dialect string // "sqlite" or "postgres"
}

// Open connects to url (empty = SQLite file medianest.db in dataDir),
// checks the connection and migrates the schema.
func Open(ctx context.Context, url, dataDir string) (*Store, error) {
	var (
		db      *bun.DB
		dialect string
	)
	switch {
	case strings.HasPrefix(url, "postgres://"), strings.HasPrefix(url, "postgresql://"):
		sqldb := sql.OpenDB(pgdriver.NewConnector(pgdriver.WithDSN(url)))
		sqldb.SetMaxOpenConns(16)
		db, dialect = bun.NewDB(sqldb, pgdialect.New()), "postgres"
	default:
		path := strings.TrimPrefix(strings.TrimPrefix(url, "sqlite:"), "file:")
		if path == "" {
			if err := os.MkdirAll(dataDir, 0o750); err != nil {
				return nil, fmt.Errorf("store: create data dir %q: %w", dataDir, err)
			}
			path = filepath.Join(dataDir, "medianest.db")
		}
		dsn := "file:" + path + "?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)&_pragma=foreign_keys(1)&_pragma=synchronous(NORMAL)" +
			"&_pragma=cache_size(-65536)&_pragma=wal_autocheckpoint(10000)&_pragma=temp_store(MEMORY)"
		sqldb, err := sql.Open("sqlite", dsn)
		if err != nil {
			return nil, fmt.Errorf("store: open sqlite %q: %w", path, err)
		}
		// SQLite allows one writer; one connection avoids SQLITE_BUSY.
		sqldb.SetMaxOpenConns(1)
		db, dialect = bun.NewDB(sqldb, sqlitedialect.New()), "sqlite"
	}
	s := &Store{DB: db, Dialect: dialect}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := ping(pctx, db); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("store: connect %s: %w", dialect, err)
	}
	if err := s.Migrate(ctx); err != nil {
		_ = db.Close()
		return nil, err
	}
	return s, nil
}

// ping opens the first connection. On SQLite that runs the connection's
// pragmas, and switching a new database to WAL while another process
// does the same can fail at once with SQLITE_BUSY (the busy timeout does
// not cover it): several nodes starting together on one file retry, within
// ctx, instead of one of them failing.
func ping(ctx context.Context, db *bun.DB) error {
	for wait := 5 * time.Millisecond; ; wait = min(2*wait, 200*time.Millisecond) {
		err := db.PingContext(ctx)
		var se *sqlite.Error
		if err == nil || !errors.As(err, &se) || se.Code()&0xff != sqlite3.SQLITE_BUSY {
			return err
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return fmt.Errorf("%w (%w)", err, ctx.Err())
		}
	}
}

// Migrate applies pending migrations under the migrator's lock, so several
// nodes starting at once migrate once.
func (s *Store) Migrate(ctx context.Context) error {
	ms, err := schema.Migrations()
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	if s.Dialect == "postgres" {
		// bun's lock table must exist before it can serialise; creating it
		// races between nodes on PostgreSQL, so an advisory lock guards it.
		conn, err := s.DB.Conn(ctx)
		if err != nil {
			return fmt.Errorf("store: migration connection: %w", err)
		}
		defer conn.Close()
		if _, err := conn.ExecContext(ctx, "SELECT pg_advisory_lock(?)", migrationLockKey); err != nil {
			return fmt.Errorf("store: advisory lock: %w", err)
		}
		defer func() {
			_, _ = conn.ExecContext(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock(?)", migrationLockKey)
		}()
	}
	m := migrate.NewMigrator(s.DB, ms)
	if err := m.Init(ctx); err != nil {
		return fmt.Errorf("store: init migrations: %w", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := m.Lock(ctx)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("store: migration lock held for 30s: %w", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	defer func() { _ = m.Unlock(context.WithoutCancel(ctx)) }()
	if _, err := m.Migrate(ctx); err != nil {
		return fmt.Errorf("store: migrate: %w", err)
	}
	return nil
}

// migrationLockKey is the PostgreSQL advisory lock id of migrations.
const migrationLockKey = 0x6d6e6862 // "mnhb"

// Ping checks the database answers.
func (s *Store) Ping(ctx context.Context) error { return s.DB.PingContext(ctx) }

// Close closes the database.
func (s *Store) Close() error { return s.DB.Close() }

// AuditEntry is one administrative action.
type AuditEntry struct {
	bun.BaseModel `bun:"table:admin_audit"`

	ID        string    `bun:"id,pk"`
	CreatedAt time.Time `bun:"created_at,notnull"`
	Actor     string    `bun:"actor,notnull"`
	Action    string    `bun:"action,notnull"`
	Target    string    `bun:"target,notnull"`
	Node      string    `bun:"node,notnull"`
	Result    string    `bun:"result,notnull"`
}

// Audit records an administrative action.
func (s *Store) Audit(ctx context.Context, e AuditEntry) error {
	if e.CreatedAt.IsZero() {
		e.CreatedAt = time.Now().UTC()
	}
	if _, err := s.DB.NewInsert().Model(&e).Exec(ctx); err != nil {
		return fmt.Errorf("store: insert audit %s: %w", e.Action, err)
	}
	return nil
}

// AuditLog returns the latest entries, newest first.
func (s *Store) AuditLog(ctx context.Context, limit int) ([]AuditEntry, error) {
	var out []AuditEntry
	if err := s.DB.NewSelect().Model(&out).Order("created_at DESC").Limit(int64(limit)).Scan(ctx); err != nil {
		return nil, fmt.Errorf("store: read audit log: %w", err)
	}
	return out, nil
}
