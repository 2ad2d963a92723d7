package loadtest

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/uptrace/bun"

	"github.com/medianest/hub/events"
	"github.com/medianest/hub/internal/bus"
	"github.com/medianest/hub/internal/store"
	"github.com/medianest/hub/schema"
	"github.com/medianest/hub/workers/security"
)

// SecurityOptions configure the security worker benchmark.
type SecurityOptions struct {
	Events      int    // events to process, default 200,000
	DatabaseURL string // default: SQLite in a temporary directory
	Batch       int    // worker batch size, default the worker's
}

// SecurityResult is the benchmark's report.
type SecurityResult struct {
	Scenario     string  `json:"scenario"`
	Database     string  `json:"database"`
	Events       int     `json:"events"`
	Stored       int64   `json:"stored"`
	Seconds      float64 `json:"seconds"`
	EventsPerSec float64 `json:"events_per_second"`
	Alerts       int     `json:"alerts"`
	CPUSeconds   float64 `json:"process_cpu_seconds"`
}

// RunSecurity stores Events security events on the stream, then runs the
// security worker (detections on) until every event is in the audit log,
// and reports the rate from stream to audit log.
func RunSecurity(ctx context.Context, o SecurityOptions, log zerolog.Logger) (SecurityResult, error) {
	if o.Events <= 0 {
		o.Events = 200_000
	}
	res := SecurityResult{Scenario: "security-worker", Database: "sqlite", Events: o.Events}
	if o.DatabaseURL != "" {
		res.Database = "postgres"
	}
	b, err := newBench(ctx, 0, "", log)
	if err != nil {
		return res, err
	}
	defer b.close()
	ns, dir := b.ns, b.dir
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		return res, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(8192))
	if err != nil {
		return res, err
	}
	prefix := fmt.Sprint("bench", time.Now().UnixNano()%1e9) // fresh streams and tables' rows are told apart by ids
	if err := bus.EnsureStreams(ctx, js, bus.StreamOptions{Prefix: prefix}); err != nil {
		return res, err
	}
	st, err := store.Open(ctx, o.DatabaseURL, dir)
	if err != nil {
		return res, err
	}
	defer st.Close()
	before, err := st.CountAudit(ctx)
	if err != nil {
		return res, err
	}
	v, err := schema.NewValidator()
	if err != nil {
		return res, err
	}

	// A mix of what a busy hub reports: mostly successful authentications,
	// failures from a few hundred IPs (some of them attacks), denials and
	// rate limits.
	subj := events.Subjects{Prefix: prefix}
	now := time.Now()
	for i := range o.Events {
		var name string
		var d events.SecurityData
		switch i % 10 {
		case 0, 1, 2, 3, 4, 5:
			u := i % 5000 // each session from its own address
			name, d = events.SecAuthenticated, events.SecurityData{IP: fmt.Sprintf("10.%d.%d.1", u/250, u%250), Namespace: "/media", UserID: fmt.Sprint("u", u), SessionID: fmt.Sprint("s", u)}
		case 6, 7:
			name, d = events.SecAuthFailed, events.SecurityData{IP: fmt.Sprintf("203.0.%d.%d", i%3, i%300), Namespace: "/media", Code: "token_invalid", UserID: fmt.Sprint("u", i%97)}
		case 8:
			name, d = events.SecAccessDenied, events.SecurityData{IP: "198.51.100.1", Namespace: "/admin", UserID: fmt.Sprint("u", i%50), RequiredRoles: []string{"admin"}}
		default:
			name, d = events.SecRateLimited, events.SecurityData{IP: fmt.Sprintf("192.0.2.%d", i%40), Limit: "events"}
		}
		data, _ := json.Marshal(d)
		raw, _ := json.Marshal(events.Event{
			SpecVersion: events.SpecVersion, ID: fmt.Sprint(prefix, "-", i), Source: "loadtest", Type: events.TypeName(events.DomainSecurity, name),
			Time: now.Add(time.Duration(i) * time.Microsecond).UTC(), DataContentType: "application/json", Data: data,
		})
		if _, err := js.PublishAsync(subj.Event(events.DomainSecurity, name), raw); err != nil {
			return res, err
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(2 * time.Minute):
		return res, fmt.Errorf("events not stored within two minutes")
	}
	log.Info().Int("events", o.Events).Msg("events on the stream; starting the worker")

	var alertIDs []string // touched by the subscription's goroutine only until Unsubscribe
	sub, err := nc.Subscribe(subj.Alerts(), func(m *nats.Msg) {
		var ev events.Event
		_ = json.Unmarshal(m.Data, &ev)
		alertIDs = append(alertIDs, ev.ID)
	})
	if err != nil {
		return res, err
	}
	defer sub.Unsubscribe()

	wctx, stop := context.WithCancel(ctx)
	defer stop()
	w := security.New(security.Config{Prefix: prefix, Batch: o.Batch, NoIPBlocks: true, NoReplayRevocation: true}, nc, js, st, v, log, nil)
	stream, err := js.Stream(ctx, events.StreamName(prefix, events.DomainSecurity))
	if err != nil {
		return res, err
	}
	si, err := stream.Info(ctx)
	if err != nil {
		return res, err
	}
	last := si.State.LastSeq
	cpu0 := cpuTime()
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- w.Run(wctx) }()
	// Follow the worker by its consumer's acknowledged position (it acks a
	// batch only after the batch's commit): polling COUNT(*) instead would
	// load the database the worker writes to, on the same two cores.
	for {
		if ci, err := stream.Consumer(ctx, "security-worker"); err == nil {
			if info, err := ci.Info(ctx); err == nil && info.AckFloor.Stream >= last {
				break
			}
		}
		if time.Since(start) > 10*time.Minute {
			return res, fmt.Errorf("events not all handled after 10 minutes")
		}
		time.Sleep(10 * time.Millisecond)
	}
	res.Seconds = time.Since(start).Seconds()
	res.CPUSeconds = (cpuTime() - cpu0).Seconds()
	res.EventsPerSec = float64(o.Events) / res.Seconds
	stop()
	<-done
	// Nothing lost: every event is in the audit log.
	n, err := st.CountAudit(ctx)
	if err != nil {
		return res, err
	}
	res.Stored = n - before
	if res.Stored != int64(o.Events) {
		return res, fmt.Errorf("%d events in, %d stored", o.Events, res.Stored)
	}
	_ = nc.Flush()
	_ = sub.Unsubscribe()
	res.Alerts = len(alertIDs)
	if res.Database == "postgres" {
		// A shared database keeps no benchmark rows: each run's would
		// make the next one's indexes larger.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		if _, err := st.DB.NewDelete().Table("security_audit").Where("id LIKE ?", prefix+"-%").Exec(cctx); err != nil {
			log.Warn().Err(err).Msg("benchmark audit rows not removed")
		}
		if len(alertIDs) > 0 {
			if _, err := st.DB.NewDelete().Table("alerts").Where("id IN (?)", bun.List(alertIDs)).Exec(cctx); err != nil {
				log.Warn().Err(err).Msg("benchmark alerts not removed")
			}
		}
	}
	return res, nil
}
