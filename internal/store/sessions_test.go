package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/uptrace/bun"
)

func openTest(t *testing.T, url string) *Store {
	t.Helper()
	s, err := Open(context.Background(), url, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestSessionsAndRevocations(t *testing.T) {
	for name, url := range backends(t) {
		t.Run(name, func(t *testing.T) {
			s := openTest(t, url(t))
			ctx := context.Background()
			now := time.Now().UTC().Truncate(time.Millisecond)
			uniq := fmt.Sprint(time.Now().UnixNano())
			sha := fmt.Sprintf("%064x", time.Now().UnixNano())
			id := "s-" + uniq

			sess := &Session{ID: id, UserID: "u-" + uniq, TokenSHA256: &sha, ExpiresAt: now.Add(time.Hour), IP: "10.0.0.1", UserAgent: "test"}
			if err := s.CreateSession(ctx, sess); err != nil {
				t.Fatal(err)
			}
			got, err := s.SessionByID(ctx, id)
			if err != nil || got == nil || got.UserID != "u-"+uniq || !got.Active(now) {
				t.Fatalf("SessionByID = %+v, %v", got, err)
			}
			bySHA, err := s.SessionByTokenSHA(ctx, sha)
			if err != nil || bySHA == nil || bySHA.ID != id {
				t.Fatalf("SessionByTokenSHA = %+v, %v", bySHA, err)
			}
			if missing, err := s.SessionByID(ctx, "nope-"+uniq); missing != nil || err != nil {
				t.Fatalf("missing session = %+v, %v", missing, err)
			}

			// Events apply once each.
			for range 2 {
				if _, err := s.ApplyOnce(ctx, "test", "refresh-"+uniq, func(ctx context.Context, tx bun.Tx) error {
					found, err := RefreshSession(ctx, tx, id, now.Add(2*time.Hour))
					if !found {
						return errors.New("not found")
					}
					return err
				}); err != nil {
					t.Fatal(err)
				}
			}
			applied, err := s.ApplyOnce(ctx, "test", "refresh-"+uniq, func(context.Context, bun.Tx) error {
				t.Fatal("applied twice")
				return nil
			})
			if err != nil || applied {
				t.Fatalf("repeat applied=%v err=%v", applied, err)
			}
			// A failing apply leaves no idempotency record, so a retry runs.
			_, err = s.ApplyOnce(ctx, "test", "fail-"+uniq, func(context.Context, bun.Tx) error { return errors.New("boom") })
			if err == nil || !strings.Contains(err.Error(), "boom") {
				t.Fatalf("err = %v", err)
			}
			applied, err = s.ApplyOnce(ctx, "test", "fail-"+uniq, func(context.Context, bun.Tx) error { return nil })
			if err != nil || !applied {
				t.Fatalf("retry applied=%v err=%v", applied, err)
			}
			got, _ = s.SessionByID(ctx, id)
			if !got.ExpiresAt.Equal(now.Add(2 * time.Hour)) {
				t.Fatalf("expiry = %v, want %v", got.ExpiresAt, now.Add(2*time.Hour))
			}

			if err := Revoke(ctx, s.DB, &Revocation{Kind: RevokeSession, Value: id, Reason: "stolen", RevokedAt: now, ExpiresAt: now.Add(time.Hour), EventID: "e1"}); err != nil {
				t.Fatal(err)
			}
			if err := Revoke(ctx, s.DB, &Revocation{Kind: RevokeUser, Value: "u-" + uniq, Reason: "first", RevokedAt: now, ExpiresAt: now.Add(time.Hour), EventID: "e2"}); err != nil {
				t.Fatal(err)
			}
			if err := Revoke(ctx, s.DB, &Revocation{Kind: RevokeUser, Value: "u-" + uniq, Reason: "second", RevokedAt: now.Add(time.Second), ExpiresAt: now.Add(time.Hour), EventID: "e3"}); err != nil {
				t.Fatal(err)
			}
			if err := Revoke(ctx, s.DB, &Revocation{Kind: RevokeJTI, Value: "old-" + uniq, Reason: "x", RevokedAt: now.Add(-2 * time.Hour), ExpiresAt: now.Add(-time.Hour), EventID: "e4"}); err != nil {
				t.Fatal(err)
			}
			got, _ = s.SessionByID(ctx, id)
			if got.Active(now) || got.RevokeReason != "stolen" {
				t.Fatalf("revoked session = %+v", got)
			}
			revs, err := s.ActiveRevocations(ctx, now)
			if err != nil {
				t.Fatal(err)
			}
			mine := map[string]Revocation{}
			for _, r := range revs {
				if strings.HasSuffix(r.Value, uniq) {
					mine[r.Kind] = r
				}
			}
			if len(mine) != 2 || mine[RevokeUser].Reason != "second" || mine[RevokeSession].EventID != "e1" {
				t.Fatalf("active revocations = %+v", mine)
			}

			if err := EndSession(ctx, s.DB, id, now, now.Add(time.Hour)); err != nil {
				t.Fatal(err)
			}
			// An older revocation applied late does not undo a newer one.
			if err := Revoke(ctx, s.DB, &Revocation{Kind: RevokeUser, Value: "u-" + uniq, Reason: "stale", RevokedAt: now.Add(-time.Hour), ExpiresAt: now.Add(-time.Minute), EventID: "e0"}); err != nil {
				t.Fatal(err)
			}
			revs, _ = s.ActiveRevocations(ctx, now)
			kept := false
			for _, r := range revs {
				kept = kept || (r.Value == "u-"+uniq && r.Reason == "second" && r.EventID == "e3")
			}
			if !kept {
				t.Fatalf("a stale revocation overwrote a newer one: %+v", revs)
			}
			// Ended or revoked before it was created, a session stays so.
			for _, early := range []string{"ended-" + uniq, "revoked-" + uniq} {
				if early[0] == 'e' {
					err = EndSession(ctx, s.DB, early, now, now.Add(time.Hour))
				} else {
					err = Revoke(ctx, s.DB, &Revocation{Kind: RevokeSession, Value: early, Reason: "early", RevokedAt: now, ExpiresAt: now.Add(time.Hour), EventID: "e5"})
				}
				if err != nil {
					t.Fatal(err)
				}
				if err := UpsertSession(ctx, s.DB, &Session{ID: early, UserID: "late", ExpiresAt: now.Add(time.Hour)}); err != nil {
					t.Fatal(err)
				}
				got, err := s.SessionByID(ctx, early)
				if err != nil || got == nil || got.Active(now) || got.UserID != "late" {
					t.Fatalf("%s after a late created = %+v, %v", early, got, err)
				}
			}
			// Cleanup removes what no longer matters.
			res, err := s.Cleanup(ctx, now.Add(3*time.Hour), time.Minute, time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			if res.Sessions < 1 || res.Revocations < 2 {
				t.Fatalf("cleanup = %+v", res)
			}
			if got, _ := s.SessionByID(ctx, id); got != nil {
				t.Fatalf("expired session kept: %+v", got)
			}
		})
	}
}
