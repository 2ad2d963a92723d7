package sessions

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/medianest/hub/events"
	"github.com/medianest/hub/hub/auth"
)

// fakeLookup is an in-memory Lookup for this unit test.
type fakeLookup struct {
	byID  map[string]*Record
	err   error
	calls int
}

func (f *fakeLookup) SessionByID(_ context.Context, id string) (*Record, error) {
	f.calls++
	if f.err != nil {
		return nil, f.err
	}
	if r := f.byID[id]; r != nil {
		cp := *r
		return &cp, nil
	}
	return nil, nil
}

func (f *fakeLookup) SessionByTokenSHA(_ context.Context, sha string) (*Record, error) {
	f.calls++
	if f.err != nil {
		return nil, f.err
	}
	for _, r := range f.byID {
		if r.TokenSHA256 == sha {
			cp := *r
			return &cp, nil
		}
	}
	return nil, nil
}

func event(t *testing.T, name string, at time.Time, data any) events.Event {
	t.Helper()
	raw, _ := json.Marshal(data)
	return events.Event{Type: events.TypeName("session", name), Time: at, Data: raw}
}

func code(err error) string {
	var ae *auth.Error
	if errors.As(err, &ae) {
		return ae.Code
	}
	if err != nil {
		return "other: " + err.Error()
	}
	return ""
}

func TestCheck(t *testing.T) {
	now := time.Now()
	lookup := &fakeLookup{byID: map[string]*Record{
		"db-only": {ID: "db-only", UserID: "u1", ExpiresAt: now.Add(time.Hour)},
		"by-sha":  {ID: "by-sha", UserID: "u1", TokenSHA256: "abc", ExpiresAt: now.Add(time.Hour)},
	}}
	c := New(Strict, lookup, 24*time.Hour)
	for _, ev := range []events.Event{
		event(t, "created", now, events.SessionCreatedData{SessionID: "live", UserID: "u1", ExpiresAt: now.Add(time.Hour)}),
		event(t, "created", now, events.SessionCreatedData{SessionID: "old", UserID: "u1", ExpiresAt: now.Add(-time.Minute)}),
		event(t, "created", now, events.SessionCreatedData{SessionID: "bye", UserID: "u1", ExpiresAt: now.Add(time.Hour)}),
		event(t, "ended", now, events.SessionEndedData{SessionID: "bye"}),
		event(t, "created", now, events.SessionCreatedData{SessionID: "stolen", UserID: "u1", ExpiresAt: now.Add(time.Hour)}),
		event(t, "revoked", now, events.SessionRevokedData{SessionID: "stolen", Reason: "x"}),
		event(t, "created", now, events.SessionCreatedData{SessionID: "short", UserID: "u1", ExpiresAt: now.Add(time.Minute)}),
		event(t, "refreshed", now, events.SessionRefreshedData{SessionID: "short", ExpiresAt: now.Add(-time.Second)}),
		event(t, "revoked", now, events.SessionRevokedData{JTI: "bad-jti", Reason: "x"}),
		event(t, "revoked", now, events.SessionRevokedData{UserID: "banned", Reason: "x"}),
	} {
		if _, err := c.Apply(ev); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name string
		id   auth.Identity
		want string // error code, "" for admitted
		sid  string
	}{
		{"live session", auth.Identity{UserID: "u1", SessionID: "live"}, "", "live"},
		{"unknown session", auth.Identity{UserID: "u1", SessionID: "nope"}, auth.CodeSessionInvalid, ""},
		{"expired session", auth.Identity{UserID: "u1", SessionID: "old"}, auth.CodeSessionInvalid, ""},
		{"ended session", auth.Identity{UserID: "u1", SessionID: "bye"}, auth.CodeSessionInvalid, ""},
		{"revoked session", auth.Identity{UserID: "u1", SessionID: "stolen"}, auth.CodeSessionRevoked, ""},
		{"refreshed into the past", auth.Identity{UserID: "u1", SessionID: "short"}, auth.CodeSessionInvalid, ""},
		{"another user's session", auth.Identity{UserID: "u2", SessionID: "live"}, auth.CodeSessionInvalid, ""},
		{"from the database", auth.Identity{UserID: "u1", SessionID: "db-only"}, "", "db-only"},
		{"by token hash", auth.Identity{UserID: "u1", TokenSHA256: "abc"}, "", "by-sha"},
		{"revoked jti", auth.Identity{UserID: "u1", SessionID: "live", JTI: "bad-jti"}, auth.CodeSessionRevoked, ""},
		{"revoked user, old token", auth.Identity{UserID: "banned", SessionID: "live", IssuedAt: now.Add(-time.Minute)}, auth.CodeSessionRevoked, ""},
		{"revoked user, token without iat", auth.Identity{UserID: "banned", SessionID: "live"}, auth.CodeSessionRevoked, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sid, err := c.Check(context.Background(), &tt.id, now)
			if code(err) != tt.want || sid != tt.sid {
				t.Fatalf("Check = %q, %v; want %q, code %q", sid, err, tt.sid, tt.want)
			}
		})
	}

	t.Run("cache hit does not touch the database", func(t *testing.T) {
		before := lookup.calls
		if _, err := c.Check(context.Background(), &auth.Identity{UserID: "u1", SessionID: "db-only"}, now); err != nil {
			t.Fatal(err)
		}
		if lookup.calls != before {
			t.Fatalf("lookup called %d times", lookup.calls-before)
		}
	})

	t.Run("database down fails closed, cache still serves", func(t *testing.T) {
		lookup.err = errors.New("connection refused")
		defer func() { lookup.err = nil }()
		if _, err := c.Check(context.Background(), &auth.Identity{UserID: "u1", SessionID: "never-seen"}, now); code(err) != CodeSessionUnavailable {
			t.Fatalf("err = %v", err)
		}
		if _, err := c.Check(context.Background(), &auth.Identity{UserID: "u1", SessionID: "live"}, now); err != nil {
			t.Fatalf("cached session refused: %v", err)
		}
	})
}

func TestStatelessAndUserRevocation(t *testing.T) {
	now := time.Now()
	c := New(Stateless, nil, time.Hour)
	c.Load([]Revocation{{Kind: "session", Value: "s-old", RevokedAt: now.Add(-time.Minute), ExpiresAt: now.Add(time.Hour)}})
	target := c.Revoke(events.SessionRevokedData{UserID: "u1", Reason: "password changed"}, now)

	tests := []struct {
		name string
		id   auth.Identity
		want string
	}{
		{"any valid token", auth.Identity{UserID: "u2"}, ""},
		{"loaded revocation", auth.Identity{UserID: "u2", SessionID: "s-old"}, auth.CodeSessionRevoked},
		{"user token issued before", auth.Identity{UserID: "u1", IssuedAt: now.Add(-time.Second)}, auth.CodeSessionRevoked},
		{"user token issued after", auth.Identity{UserID: "u1", IssuedAt: now.Add(time.Second)}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := c.Check(context.Background(), &tt.id, now); code(err) != tt.want {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
	if !target.Matches(&auth.Identity{UserID: "u1", IssuedAt: now.Add(-time.Hour)}, "") ||
		target.Matches(&auth.Identity{UserID: "u1", IssuedAt: now.Add(time.Hour)}, "") ||
		target.Matches(&auth.Identity{UserID: "u2"}, "") {
		t.Fatal("user target matches the wrong sockets")
	}
	// Revocations are forgotten once no token could match them.
	c.Sweep(now.Add(2 * time.Hour))
	if _, revs := c.Len(); revs != 0 {
		t.Fatalf("%d revocations left after sweep", revs)
	}
}
