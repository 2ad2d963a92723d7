package store

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"
)

// backends yields a fresh store per database the machine has: SQLite
// always, PostgreSQL when MEDIANEST_TEST_POSTGRES_DSN is set.
func backends(t *testing.T) map[string]func(t *testing.T) string {
	out := map[string]func(t *testing.T) string{
		"sqlite": func(t *testing.T) string { return "" },
	}
	out["postgres"] = func(t *testing.T) string {
		dsn := os.Getenv("MEDIANEST_TEST_POSTGRES_DSN")
		if dsn == "" {
			t.Skip("MEDIANEST_TEST_POSTGRES_DSN is not set; skipping the PostgreSQL run")
		}
		return dsn
	}
	return out
}

func TestOpenMigrateAudit(t *testing.T) {
	for name, url := range backends(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			u := url(t)
			dir := t.TempDir()
			// Several nodes starting at once migrate under the lock.
			var wg sync.WaitGroup
			errs := make([]error, 3)
			stores := make([]*Store, 3)
			for i := range stores {
				wg.Add(1)
				go func() {
					defer wg.Done()
					stores[i], errs[i] = Open(ctx, u, dir)
				}()
			}
			wg.Wait()
			for i, err := range errs {
				if err != nil {
					t.Fatalf("open %d: %v", i, err)
				}
				defer stores[i].Close()
			}
			s := stores[0]
			if err := s.Ping(ctx); err != nil {
				t.Fatal(err)
			}
			actor := fmt.Sprintf("admin-%d", time.Now().UnixNano())
			if err := s.Audit(ctx, AuditEntry{ID: actor, Actor: actor, Action: "user.disconnect", Target: "u1", Node: "n1", Result: "2 sockets"}); err != nil {
				t.Fatal(err)
			}
			log, err := stores[1].AuditLog(ctx, 10)
			if err != nil {
				t.Fatal(err)
			}
			found := false
			for _, e := range log {
				if e.Actor == actor && e.Target == "u1" && e.Result == "2 sockets" {
					found = true
				}
			}
			if !found {
				t.Fatalf("audit entry not read back: %+v", log)
			}
			// Migrating again is a no-op.
			if err := s.Migrate(ctx); err != nil {
				t.Fatal(err)
			}
		})
	}
}
