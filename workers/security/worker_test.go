package security

import (
	"context"
	"encoding/json"
	"fmt"
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

func runWorker(t *testing.T, nc *nats.Conn, js jetstream.JetStream, st *store.Store, cfg Config) (stop func()) {
	t.Helper()
	v, err := schema.NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	w := New(cfg, nc, js, st, v, zerolog.Nop(), nil)
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

func waitAudit(t *testing.T, st *store.Store, ids []string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		n, err := st.DB.NewSelect().Model((*store.AuditRecord)(nil)).Where("id IN (?)", bunIn(ids)).Count(context.Background())
		if err == nil && n == int64(len(ids)) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("audit holds %d of %d events (%v)", n, len(ids), err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func streamAlerts(t *testing.T, js jetstream.JetStream) []events.AlertData {
	t.Helper()
	cons, err := js.OrderedConsumer(context.Background(), "MEDIANEST_ALERTS", jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.FetchNoWait(1000)
	if err != nil {
		t.Fatal(err)
	}
	var out []events.AlertData
	for m := range batch.Messages() {
		var ev events.Event
		var a events.AlertData
		_ = json.Unmarshal(m.Data(), &ev)
		_ = json.Unmarshal(ev.Data, &a)
		out = append(out, a)
	}
	return out
}

// TestWorkerRestartMidStream stops the worker in the middle of two attacks
// and starts it again: every alert is raised once, counts continue, and no
// audit row is doubled.
func TestWorkerRestartMidStream(t *testing.T) {
	for name, url := range testkit.Databases(t) {
		t.Run(name, func(t *testing.T) {
			nc, js := testkit.Streams(t)
			st, err := store.Open(context.Background(), url, t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			run := fmt.Sprint(time.Now().UnixNano() % 1e6)
			ipA, ipB := "10.0."+run[:2]+".1", "10.1."+run[:2]+".2"
			cfg := Config{NoIPBlocks: true, NoReplayRevocation: true, Batch: 7, LeaseTTL: time.Second}

			var ids []string
			// First half: IP A crosses the brute-force threshold, the replay
			// of session s is under way, and filler.
			for i := range 12 {
				ids = append(ids, testkit.Publish(t, js, events.DomainSecurity, events.SecAuthFailed, events.SecurityData{IP: ipA, Namespace: "/media", Code: "token_invalid"}))
				ids = append(ids, testkit.Publish(t, js, events.DomainSecurity, events.SecAuthenticated, events.SecurityData{IP: fmt.Sprint("172.16.0.", i), Namespace: "/", UserID: fmt.Sprint("u", i)}))
			}
			for i := range 2 {
				ids = append(ids, testkit.Publish(t, js, events.DomainSecurity, events.SecAuthenticated, events.SecurityData{IP: fmt.Sprint("192.168.", i, ".1"), Namespace: "/media", UserID: "v", SessionID: "s-" + run}))
			}
			stop := runWorker(t, nc, js, st, cfg)
			waitAudit(t, st, ids)
			stop() // kill it mid-stream

			// Second half, while it is down: more of A, the third replay IP,
			// and B's attack.
			for range 3 {
				ids = append(ids, testkit.Publish(t, js, events.DomainSecurity, events.SecAuthFailed, events.SecurityData{IP: ipA, Namespace: "/media", Code: "token_invalid"}))
			}
			ids = append(ids, testkit.Publish(t, js, events.DomainSecurity, events.SecAuthenticated, events.SecurityData{IP: "192.168.9.1", Namespace: "/media", UserID: "v", SessionID: "s-" + run}))
			for range 10 {
				ids = append(ids, testkit.Publish(t, js, events.DomainSecurity, events.SecAuthFailed, events.SecurityData{IP: ipB, Namespace: "/admin", Code: "token_invalid"}))
			}
			stop = runWorker(t, nc, js, st, cfg)
			defer stop()
			waitAudit(t, st, ids)

			total, err := st.DB.NewSelect().Model((*store.AuditRecord)(nil)).Where("id IN (?)", bunIn(ids)).Count(context.Background())
			if err != nil || total != int64(len(ids)) {
				t.Fatalf("audit rows %d, want %d", total, len(ids))
			}
			want := map[string]int{"brute_force ip:" + ipA: 15, "brute_force ip:" + ipB: 10, "token_replay session:s-" + run: 3}
			testkit.WaitFor(t, 10*time.Second, func() error {
				got := map[string]int{}
				for _, a := range streamAlerts(t, js) {
					got[a.Rule+" "+a.Subject]++
				}
				for k := range want {
					if got[k] != 1 {
						return fmt.Errorf("alerts on the stream: %v", got)
					}
				}
				if len(got) != len(want) {
					return fmt.Errorf("unexpected alerts: %v", got)
				}
				return nil
			})
			// Stored alerts count what followed, across the restart.
			testkit.WaitFor(t, 10*time.Second, func() error {
				list, err := st.Alerts(context.Background(), store.Filter{Limit: 100})
				if err != nil {
					return err
				}
				got := map[string]int{}
				for _, a := range list {
					got[a.Rule+" "+a.Subject] = a.Count
				}
				for k, n := range want {
					if got[k] != n {
						return fmt.Errorf("stored counts %v, want %v", got, want)
					}
				}
				return nil
			})
		})
	}
}

// TestWorkerCommitFailsMidStream makes the database refuse one event's row
// for a while (a trigger, so the failure comes from a real SQLite): the
// worker hands that batch and everything it read after it back, retries,
// and ends with every event stored once, in stream order, and one alert
// counting every failure.
func TestWorkerCommitFailsMidStream(t *testing.T) {
	ctx := context.Background()
	nc, js := testkit.Streams(t)
	st, err := store.Open(ctx, "", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, q := range []string{
		`CREATE TABLE refuse (id TEXT PRIMARY KEY)`,
		`CREATE TRIGGER refuse_audit BEFORE INSERT ON security_audit
		 WHEN EXISTS (SELECT 1 FROM refuse WHERE id = NEW.id)
		 BEGIN SELECT RAISE(ABORT, 'refused by the test'); END`,
	} {
		if _, err := st.DB.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	var ids []string
	for i := range 300 {
		if i%3 == 0 {
			ids = append(ids, testkit.Publish(t, js, events.DomainSecurity, events.SecAuthFailed, events.SecurityData{IP: "10.9.9.9", Namespace: "/media", Code: "token_invalid"}))
		} else {
			ids = append(ids, testkit.Publish(t, js, events.DomainSecurity, events.SecAuthenticated, events.SecurityData{IP: fmt.Sprint("172.16.1.", i%200), Namespace: "/", UserID: fmt.Sprint("u", i)}))
		}
	}
	if _, err := st.DB.ExecContext(ctx, `INSERT INTO refuse (id) VALUES (?)`, ids[150]); err != nil {
		t.Fatal(err)
	}
	stop := runWorker(t, nc, js, st, Config{NoIPBlocks: true, NoReplayRevocation: true, Batch: 10, LeaseTTL: time.Second})
	defer stop()
	// The worker gets as far as the refused batch and no further.
	testkit.WaitFor(t, 10*time.Second, func() error {
		n, err := st.CountAudit(ctx)
		if err != nil || n != 150 {
			return fmt.Errorf("audit rows %d (%v), want the 150 before the refused batch", n, err)
		}
		return nil
	})
	time.Sleep(1500 * time.Millisecond) // at least one retry is refused too
	if n, _ := st.CountAudit(ctx); n != 150 {
		t.Fatalf("audit rows %d while the batch is refused", n)
	}
	if _, err := st.DB.ExecContext(ctx, `DELETE FROM refuse`); err != nil {
		t.Fatal(err)
	}
	waitAudit(t, st, ids)

	var seqs []int64
	if err := st.DB.NewSelect().Table("security_audit").Column("stream_seq").OrderExpr("rowid").Scan(ctx, &seqs); err != nil {
		t.Fatal(err)
	}
	if len(seqs) != len(ids) {
		t.Fatalf("%d audit rows, want %d", len(seqs), len(ids))
	}
	for i := 1; i < len(seqs); i++ {
		if seqs[i] <= seqs[i-1] {
			t.Fatalf("row %d has stream sequence %d after %d: redelivery broke the stream's order", i, seqs[i], seqs[i-1])
		}
	}
	testkit.WaitFor(t, 10*time.Second, func() error {
		list, err := st.Alerts(ctx, store.Filter{Rule: RuleBruteForce})
		if err != nil {
			return err
		}
		if len(list) != 1 || list[0].Count != 100 {
			return fmt.Errorf("brute-force alerts %+v, want one counting 100", list)
		}
		return nil
	})
	if got := streamAlerts(t, js); len(got) != 1 {
		t.Fatalf("%d alerts on the stream, want 1: %+v", len(got), got)
	}
}

func TestWorkerDeadLetters(t *testing.T) {
	nc, js := testkit.Streams(t)
	st, err := store.Open(context.Background(), "", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	dead := make(chan *nats.Msg, 16)
	sub, err := nc.ChanSubscribe("medianest.deadletter.security", dead)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	stop := runWorker(t, nc, js, st, Config{LeaseTTL: time.Second})
	defer stop()

	bad := map[string][]byte{
		"not json":       []byte("{"),
		"missing ip":     testkit.Envelope(t, events.DomainSecurity, events.SecAuthFailed, map[string]any{"namespace": "/", "code": "x"}),
		"bad limit":      testkit.Envelope(t, events.DomainSecurity, events.SecRateLimited, map[string]any{"ip": "1.2.3.4", "limit": "forever"}),
		"unknown type":   testkit.Envelope(t, events.DomainSecurity, "telepathy", map[string]any{"ip": "1.2.3.4"}),
		"roles not list": testkit.Envelope(t, events.DomainSecurity, events.SecAccessDenied, map[string]any{"ip": "1.2.3.4", "namespace": "/", "user_id": "u", "required_roles": "admin"}),
	}
	for _, body := range bad {
		if _, err := js.Publish(context.Background(), "medianest.events.security.x", body); err != nil {
			t.Fatal(err)
		}
	}
	good := testkit.Publish(t, js, events.DomainSecurity, events.SecAuthFailed, events.SecurityData{IP: "1.2.3.4", Namespace: "/", Code: "token_invalid"})
	got := 0
	for got < len(bad) {
		select {
		case m := <-dead:
			if m.Header.Get(events.HeaderDeadLetterReason) == "" || m.Header.Get(events.HeaderDeadLetterSubject) != "medianest.events.security.x" {
				t.Fatalf("dead letter without reason or subject: %v", m.Header)
			}
			got++
		case <-time.After(10 * time.Second):
			t.Fatalf("%d of %d dead letters", got, len(bad))
		}
	}
	waitAudit(t, st, []string{good})
}

func bunIn(ids []string) any { return bun.List(ids) }
