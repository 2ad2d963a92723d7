package store

import (
	"context"
	"fmt"
	"testing"
	"time"
)

func TestInsertAuditReturnsFresh(t *testing.T) {
	for name, url := range backends(t) {
		t.Run(name, func(t *testing.T) {
			s := openTest(t, url(t))
			ctx := context.Background()
			run := fmt.Sprint(time.Now().UnixNano())
			rec := func(i int) AuditRecord {
				return AuditRecord{ID: fmt.Sprint(run, "-", i), Type: "security.auth_failed", OccurredAt: time.Now().UTC(), IP: "1.2.3.4", Data: "{}"}
			}
			fresh, err := InsertAudit(ctx, s.DB, []AuditRecord{rec(1), rec(2)})
			if err != nil || len(fresh) != 2 {
				t.Fatalf("first insert: %v %v", fresh, err)
			}
			fresh, err = InsertAudit(ctx, s.DB, []AuditRecord{rec(2), rec(3)})
			if err != nil || len(fresh) != 1 || !fresh[fmt.Sprint(run, "-3")] {
				t.Fatalf("second insert: %v %v", fresh, err)
			}
		})
	}
}

func TestAlertPagesDoNotSkipTies(t *testing.T) {
	for name, url := range backends(t) {
		t.Run(name, func(t *testing.T) {
			s := openTest(t, url(t))
			ctx := context.Background()
			run := fmt.Sprint(time.Now().UnixNano())
			at := time.Now().UTC().Truncate(time.Millisecond).Add(time.Hour) // newer than other runs' rows
			var recs []AlertRecord
			for i := range 5 {
				recs = append(recs, AlertRecord{ID: fmt.Sprint(run, "-", i), Rule: "r" + run, Severity: "info", Subject: "ip:1.1.1.1",
					Summary: "s", Count: 1, FirstSeen: at, LastSeen: at, EventIDs: "[]"})
			}
			if err := UpsertAlerts(ctx, s.DB, recs); err != nil {
				t.Fatal(err)
			}
			seen := map[string]bool{}
			f := Filter{Rule: "r" + run, Limit: 2}
			for range 5 {
				page, err := s.Alerts(ctx, f)
				if err != nil {
					t.Fatal(err)
				}
				if len(page) == 0 {
					break
				}
				for _, a := range page {
					if seen[a.ID] {
						t.Fatalf("%s on two pages", a.ID)
					}
					seen[a.ID] = true
				}
				last := page[len(page)-1]
				f.Before, f.BeforeID = last.FirstSeen, last.ID
			}
			if len(seen) != 5 {
				t.Fatalf("paged through %d of 5 alerts sharing one time", len(seen))
			}
		})
	}
}
