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

// TestInsertAuditKeepsEveryField reads back what the batch insert stored,
// with the characters an array or SQL literal has to escape.
func TestInsertAuditKeepsEveryField(t *testing.T) {
	for name, url := range backends(t) {
		t.Run(name, func(t *testing.T) {
			s := openTest(t, url(t))
			ctx := context.Background()
			run := fmt.Sprint(time.Now().UnixNano())
			at := time.Now().UTC().Truncate(time.Microsecond).Add(2 * time.Hour)
			want := []AuditRecord{
				{ID: run + "-a", Type: "security.auth_failed", OccurredAt: at, IP: "2001:db8::1", UserID: `u "quoted", {braced} \\ back`,
					SessionID: "NULL", Namespace: "/media", Code: "token_invalid", Data: `{"reason":"it's \"bad\"","x":[1,2]}`, StreamSeq: 42},
				{ID: run + "-b", Type: "security.access_denied", OccurredAt: at.Add(-time.Second), IP: "203.0.113.9", UserID: "ünïcødé 用户",
					Data: "{}", StreamSeq: 43},
			}
			if _, err := InsertAudit(ctx, s.DB, want); err != nil {
				t.Fatal(err)
			}
			for _, w := range want {
				got, err := s.AuditLogSecurity(ctx, Filter{IP: w.IP, Since: at.Add(-time.Minute), Limit: 10})
				if err != nil {
					t.Fatal(err)
				}
				var found bool
				for _, g := range got {
					if g.ID != w.ID {
						continue
					}
					found = true
					g.OccurredAt = g.OccurredAt.UTC()
					g.StreamSeq = w.StreamSeq // not read back by the API's query (json:"-"), compared below
					if !g.OccurredAt.Equal(w.OccurredAt) || g.Type != w.Type || g.IP != w.IP || g.UserID != w.UserID ||
						g.SessionID != w.SessionID || g.Namespace != w.Namespace || g.Code != w.Code || g.Data != w.Data {
						t.Errorf("stored\n%+v\nread back\n%+v", w, g)
					}
				}
				if !found {
					t.Errorf("%s not read back", w.ID)
				}
			}
			var seq int64
			if err := s.DB.NewSelect().Table("security_audit").Column("stream_seq").Where("id = ?", run+"-a").Scan(ctx, &seq); err != nil || seq != 42 {
				t.Errorf("stream_seq = %d, %v; want 42", seq, err)
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
