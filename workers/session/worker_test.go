package session

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/uptrace/bun"

	"github.com/medianest/hub/events"
	"github.com/medianest/hub/internal/store"
	"github.com/medianest/hub/internal/testkit"
	"github.com/medianest/hub/schema"
)

// runWorker runs a worker until the returned stop is called.
func runWorker(t *testing.T, nc *nats.Conn, js jetstream.JetStream, st *store.Store, v *schema.Validator) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w := New(Config{ClusterTimeout: 50 * time.Millisecond}, nc, js, st, v, zerolog.Nop(), nil)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := w.Run(ctx); err != nil {
			t.Errorf("worker: %v", err)
		}
	}()
	return func() { cancel(); wg.Wait() }
}

func TestWorkerRestartMidStream(t *testing.T) {
	for name, url := range testkit.Databases(t) {
		t.Run(name, func(t *testing.T) {
			nc, js := testkit.Streams(t)
			st, err := store.Open(context.Background(), url, t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			v, err := schema.NewValidator()
			if err != nil {
				t.Fatal(err)
			}
			run := fmt.Sprint(time.Now().UnixNano())
			const sessionsN = 300
			stop := runWorker(t, nc, js, st, v)
			var ids []string
			for i := range sessionsN {
				ids = append(ids, testkit.Publish(t, js, events.DomainSession, events.SessionCreated, events.SessionCreatedData{
					SessionID: fmt.Sprintf("%s-%d", run, i), UserID: "u" + run, ExpiresAt: time.Now().Add(time.Hour),
				}))
				if i == sessionsN/3 {
					stop()                             // kill the worker mid-stream…
					stop = runWorker(t, nc, js, st, v) // …and start it again
				}
			}
			revokeID := testkit.Publish(t, js, events.DomainSession, events.SessionRevoked, events.SessionRevokedData{SessionID: run + "-7", Reason: "test"})
			ids = append(ids, revokeID)
			defer func() { stop() }()

			// Every event is applied exactly once in effect.
			deadline := time.Now().Add(20 * time.Second)
			for {
				var n int64
				n, err = st.DB.NewSelect().Table("processed_events").Where("id IN (?)", bunIn(ids)).Count(context.Background())
				if err == nil && n == int64(len(ids)) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("processed %d of %d events (%v)", n, len(ids), err)
				}
				time.Sleep(50 * time.Millisecond)
			}
			count, err := st.DB.NewSelect().Table("sessions").Where("user_id = ?", "u"+run).Count(context.Background())
			if err != nil || count != int64(sessionsN) {
				t.Fatalf("sessions stored = %d, %v; want %d", count, err, sessionsN)
			}
			sess, err := st.SessionByID(context.Background(), run+"-7")
			if err != nil || sess == nil || sess.RevokedAt.IsZero() || sess.RevokeReason != "test" {
				t.Fatalf("revoked session = %+v, %v", sess, err)
			}
			// Redelivered duplicates are not applied again: one record each.
			dup, err := st.DB.NewSelect().Table("processed_events").Where("id = ?", ids[0]).Count(context.Background())
			if err != nil || dup != 1 {
				t.Fatalf("event recorded %d times", dup)
			}
			// The revocation is recorded once as a security event (after
			// the commit, so poll for it).
			deadline = time.Now().Add(10 * time.Second)
			for {
				got := countSecurityEvents(t, js, "session-revoked-"+revokeID)
				if got == 1 {
					break
				}
				if got > 1 || time.Now().After(deadline) {
					t.Fatalf("security.session_revoked recorded %d times", got)
				}
				time.Sleep(50 * time.Millisecond)
			}
		})
	}
}

func TestWorkerDeadLetters(t *testing.T) {
	nc, js := testkit.Streams(t)
	st, err := store.Open(context.Background(), "", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	v, _ := schema.NewValidator()
	dead := make(chan *nats.Msg, 16)
	sub, err := nc.ChanSubscribe("medianest.deadletter.session", dead)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	stop := runWorker(t, nc, js, st, v)
	defer stop()

	bad := []struct {
		name, subject string
		body          []byte
		reason        string
	}{
		{"not json", "medianest.events.session.created", []byte("{nope"), "not JSON"},
		{"missing user", "medianest.events.session.created", testkit.Envelope(t, events.DomainSession, "created", map[string]any{"session_id": "s", "expires_at": time.Now()}), "user_id"},
		{"unknown type", "medianest.events.session.exploded", testkit.Envelope(t, events.DomainSession, "exploded", map[string]any{}), "unknown event type"},
		{"revocation without target", "medianest.events.session.revoked", testkit.Envelope(t, events.DomainSession, "revoked", map[string]any{"reason": "x"}), "data"},
	}
	for _, b := range bad {
		if _, err := js.Publish(context.Background(), b.subject, b.body); err != nil {
			t.Fatal(err)
		}
	}
	good := testkit.Publish(t, js, events.DomainSession, events.SessionCreated, events.SessionCreatedData{SessionID: "after-bad", UserID: "u", ExpiresAt: time.Now().Add(time.Hour)})
	for _, b := range bad {
		select {
		case m := <-dead:
			reason := m.Header.Get(events.HeaderDeadLetterReason)
			if reason == "" || m.Header.Get(events.HeaderDeadLetterSubject) != b.subject || string(m.Data) != string(b.body) {
				t.Fatalf("%s: dead letter %q from %q", b.name, reason, m.Header.Get(events.HeaderDeadLetterSubject))
			}
			if !contains(reason, b.reason) {
				t.Fatalf("%s: reason %q does not mention %q", b.name, reason, b.reason)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: no dead letter", b.name)
		}
	}
	// The worker keeps going.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if s, _ := st.SessionByID(context.Background(), "after-bad"); s != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("event %s after the bad ones was not applied", good)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Dead letters are durable: they are on the dead-letter stream.
	s, err := js.Stream(context.Background(), "MEDIANEST_DEADLETTER")
	if err != nil {
		t.Fatal(err)
	}
	if n := s.CachedInfo().State.Msgs; n != uint64(len(bad)) {
		t.Fatalf("dead-letter stream holds %d messages, want %d", n, len(bad))
	}
}

func countSecurityEvents(t *testing.T, js jetstream.JetStream, id string) int {
	t.Helper()
	cons, err := js.OrderedConsumer(context.Background(), "MEDIANEST_SECURITY", jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{"medianest.events.security.session_revoked"},
	})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.FetchNoWait(100)
	if err != nil {
		t.Fatal(err)
	}
	got := 0
	for m := range batch.Messages() {
		var ev events.Event
		_ = json.Unmarshal(m.Data(), &ev)
		if ev.ID == id {
			got++
		}
	}
	return got
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

func TestBackoff(t *testing.T) {
	tests := []struct {
		attempt uint64
		want    time.Duration
	}{{1, 100 * time.Millisecond}, {2, 200 * time.Millisecond}, {4, 800 * time.Millisecond}, {30, 30 * time.Second}}
	for _, tt := range tests {
		if got := backoff(tt.attempt, 30*time.Second); got != tt.want {
			t.Errorf("backoff(%d) = %v, want %v", tt.attempt, got, tt.want)
		}
	}
}

// bunIn wraps a slice for an IN (?) placeholder.
func bunIn(ids []string) any { return bun.List(ids) }
