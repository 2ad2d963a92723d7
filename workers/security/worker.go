// Package security is the security worker: it consumes
// medianest.events.security.> in batches, writes each event to the audit
// log (idempotent by event id, acknowledged after the commit), dead-letters
// events that fail their JSON Schema, runs the detections of [Detector],
// raises one alert per rule and subject per window on
// medianest.alerts.<severity>.<rule> (and an optional signed webhook), and
// enforces: brute force and credential stuffing block the IP on every hub
// node, token replay revokes the session through the revocation path.
//
// Detection state is rebuilt at start by replaying the stream's last
// window up to the consumer's acknowledged position, so a restart loses no
// alert and raises none twice. The detections need to see every event, so
// one security worker per cluster is active at a time: workers hold a lease
// in a JetStream key-value bucket, and a standby takes over when the active
// one stops.
package security

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/uptrace/bun"

	"github.com/medianest/hub/events"
	"github.com/medianest/hub/internal/bus"
	"github.com/medianest/hub/internal/store"
	"github.com/medianest/hub/schema"
)

// Config configures a [Worker]. Zero values take the documented defaults.
type Config struct {
	// Prefix is the subject prefix; default "medianest".
	Prefix string
	// Durable is the consumer name; default "security-worker".
	Durable string
	// Batch is the most events fetched and committed at once; default 1000.
	Batch int
	// FetchWait bounds the wait for a batch to fill once its first event
	// is in; default 20ms.
	FetchWait time.Duration
	// Rules are the detection thresholds.
	Rules Rules
	// NoIPBlocks turns off blocking IPs on brute_force and credential_stuffing.
	NoIPBlocks bool
	// BlockFor is how long an IP stays blocked; default 15m.
	BlockFor time.Duration
	// NoReplayRevocation turns off revoking a replayed session or token.
	NoReplayRevocation bool
	// Webhook, if URL is set, receives every raised alert.
	Webhook WebhookConfig
	// Source names the worker in the events it publishes.
	Source string
	// LeaseTTL is how long a crashed active worker holds the lease before
	// a standby takes over; default 10s.
	LeaseTTL time.Duration
}

func (c *Config) setDefaults() {
	if c.Prefix == "" {
		c.Prefix = events.DefaultPrefix
	}
	if c.Durable == "" {
		c.Durable = "security-worker"
	}
	if c.LeaseTTL <= 0 {
		c.LeaseTTL = 10 * time.Second
	}
	if c.Batch <= 0 {
		c.Batch = 1000
	}
	if c.FetchWait <= 0 {
		c.FetchWait = 20 * time.Millisecond
	}
	if c.BlockFor <= 0 {
		c.BlockFor = 15 * time.Minute
	}
	if c.Source == "" {
		c.Source = "medianest-security-worker"
	}
	c.Rules.setDefaults()
}

// Worker is the security worker.
type Worker struct {
	cfg       Config
	nc        *nats.Conn
	js        jetstream.JetStream
	store     *store.Store
	validator *schema.Validator
	log       zerolog.Logger
	subj      events.Subjects
	stream    string
	detector  *Detector
	webhook   *webhook
	metrics   metrics
}

type metrics struct {
	events      *prometheus.CounterVec
	alerts      *prometheus.CounterVec
	deadLetters prometheus.Counter
	batchTime   prometheus.Histogram
}

// New returns a worker; reg receives its metrics (nil = none).
func New(cfg Config, nc *nats.Conn, js jetstream.JetStream, st *store.Store, v *schema.Validator, log zerolog.Logger, reg prometheus.Registerer) *Worker {
	cfg.setDefaults()
	w := &Worker{
		cfg: cfg, nc: nc, js: js, store: st, validator: v,
		log:    log.With().Str("worker", "security").Logger(),
		subj:   events.Subjects{Prefix: cfg.Prefix},
		stream: events.StreamName(cfg.Prefix, events.DomainSecurity),
		metrics: metrics{
			events: prometheus.NewCounterVec(prometheus.CounterOpts{
				Name: "medianest_security_worker_events_total", Help: "Security events handled, by result.",
			}, []string{"result"}),
			alerts: prometheus.NewCounterVec(prometheus.CounterOpts{
				Name: "medianest_alerts_total", Help: "Alerts raised, by rule.",
			}, []string{"rule"}),
			deadLetters: prometheus.NewCounter(prometheus.CounterOpts{
				Name: "medianest_security_worker_dead_letters_total", Help: "Security events sent to the dead-letter subject.",
			}),
			batchTime: prometheus.NewHistogram(prometheus.HistogramOpts{
				Name: "medianest_security_worker_batch_seconds", Help: "Time to handle one batch, commit and publishes included.",
				Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
			}),
		},
	}
	if cfg.Webhook.URL != "" {
		w.webhook = newWebhook(cfg.Webhook, w.log, reg)
	}
	if reg != nil {
		reg.MustRegister(w.metrics.events, w.metrics.alerts, w.metrics.deadLetters, w.metrics.batchTime)
	}
	return w
}

// Run consumes until ctx is done; it returns nil on cancellation. Only
// the holder of the cluster's security-worker lease consumes; other
// workers wait as standbys.
func (w *Worker) Run(ctx context.Context) error {
	if w.webhook != nil {
		go w.webhook.run(ctx)
	}
	bus.RunLeased(ctx, w.js, w.cfg.Durable, w.cfg.LeaseTTL, w.log, w.session)
	return nil
}

// session rebuilds the detections and consumes until an error.
func (w *Worker) session(ctx context.Context) error {
	cons, err := w.js.CreateOrUpdateConsumer(ctx, w.stream, jetstream.ConsumerConfig{
		Durable:       w.cfg.Durable,
		Description:   "MediaNest security worker",
		FilterSubject: w.subj.Events(events.DomainSecurity),
		// One worker consumes (the lease), in order, and confirms each
		// batch as a whole once it is durable: acking the batch's last
		// message acknowledges everything before it.
		AckPolicy:     jetstream.AckAllPolicy,
		AckWait:       30 * time.Second,
		MaxDeliver:    -1,
		MaxAckPending: w.cfg.Batch * 4,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return fmt.Errorf("consumer %s: %w", w.cfg.Durable, err)
	}
	for ctx.Err() == nil {
		// Start from the acknowledged position: whatever this worker, or
		// one that held the lease before, read and did not commit is
		// delivered again, in stream order (a nak would put it back in
		// the order the naks arrive, behind messages already in flight).
		if _, err := w.js.ResetConsumer(ctx, w.stream, w.cfg.Durable); err != nil {
			return fmt.Errorf("reset consumer %s to its ack floor: %w", w.cfg.Durable, err)
		}
		if err := w.rebuild(ctx, cons); err != nil {
			return err
		}
		if err := w.consume(ctx, cons); err != nil {
			if errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, jetstream.ErrConsumerNotFound) {
				return err
			}
			if ctx.Err() != nil {
				return nil
			}
			w.log.Warn().Err(err).Msg("batch not applied; going back to the last committed event")
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(time.Second):
			}
		}
	}
	return nil
}

// batch is a run of messages fetched together, parsed ahead of its commit.
type batch struct {
	msgs  []jetstream.Msg // in stream order; the last one acknowledges all
	items []parsed        // the valid events among them
	bad   []rejected      // the invalid ones, to dead-letter
	err   error           // the iterator failed; msgs is empty
}

type parsed struct {
	o   Observation
	rec store.AuditRecord
}

type rejected struct {
	m      jetstream.Msg
	reason string
}

// consume handles messages in batches until an error. A reader goroutine
// fetches and parses the next batch (JSON and schema checks: most of the
// worker's own CPU) while this one commits the current batch, so the
// database and the parsing overlap. What was read but not committed is
// left unacknowledged: the next session resets the consumer to its ack
// floor, so it comes again, in stream order.
func (w *Worker) consume(ctx context.Context, cons jetstream.Consumer) error {
	it, err := cons.Messages(jetstream.PullMaxMessages(2*w.cfg.Batch), jetstream.PullHeartbeat(5*time.Second))
	if err != nil {
		return err
	}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	next := make(chan *batch, 1)
	go w.read(rctx, it, next)
	defer func() {
		cancel()
		it.Drain()
		for range next { // wait for the reader to finish
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case b, ok := <-next:
			switch {
			case !ok:
				return ctx.Err()
			case b.err != nil:
				return b.err
			}
			if err := w.handle(ctx, b); err != nil {
				return err
			}
		}
	}
}

// read fetches batches of up to Batch messages — the first waited for,
// the rest taken while they arrive within FetchWait — parses them and
// hands them on until ctx ends or the iterator closes.
func (w *Worker) read(ctx context.Context, it jetstream.MessagesContext, next chan<- *batch) {
	defer close(next)
	for ctx.Err() == nil {
		first, err := it.Next(jetstream.NextMaxWait(time.Second))
		if err != nil {
			if errors.Is(err, nats.ErrTimeout) || errors.Is(err, jetstream.ErrNoHeartbeat) {
				continue
			}
			if !errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				select {
				case next <- &batch{err: err}:
				case <-ctx.Done():
				}
			}
			return
		}
		b := &batch{msgs: make([]jetstream.Msg, 1, w.cfg.Batch)}
		b.msgs[0] = first
		deadline := time.Now().Add(w.cfg.FetchWait)
		for len(b.msgs) < w.cfg.Batch {
			wait := time.Until(deadline)
			if wait <= 0 {
				break
			}
			m, err := it.Next(jetstream.NextMaxWait(wait))
			if err != nil {
				break
			}
			b.msgs = append(b.msgs, m)
		}
		w.prepare(b)
		select {
		case next <- b:
		case <-ctx.Done():
			return
		}
	}
}

// prepare parses a batch's messages into audit records and observations.
func (w *Worker) prepare(b *batch) {
	b.items = make([]parsed, 0, len(b.msgs))
	for _, m := range b.msgs {
		o, data, err := w.parse(m.Data())
		if err != nil {
			b.bad = append(b.bad, rejected{m, err.Error()})
			continue
		}
		var seq int64
		if md, err := m.Metadata(); err == nil {
			seq = int64(md.Sequence.Stream)
		}
		b.items = append(b.items, parsed{o: o, rec: store.AuditRecord{
			ID: o.ID, Type: "security." + o.Name, OccurredAt: o.Time.UTC(), IP: o.Data.IP, UserID: o.Data.UserID,
			SessionID: o.Data.SessionID, Namespace: o.Data.Namespace, Code: o.Data.Code, Data: string(data), StreamSeq: seq,
		}})
	}
}

// rebuild replays the events of the last window that the consumer has
// acknowledged into a fresh detector, so detections continue where they
// were: the same alerts are open, with the same ids.
func (w *Worker) rebuild(ctx context.Context, cons jetstream.Consumer) error {
	w.detector = NewDetector(w.cfg.Rules)
	info, err := cons.Info(ctx)
	if err != nil {
		return fmt.Errorf("consumer info: %w", err)
	}
	floor := info.AckFloor.Stream
	if floor == 0 {
		return nil
	}
	// Replay the window that ends at the last acknowledged event, wherever
	// in time that is (the worker may have been down a while).
	end := time.Now()
	if stream, err := w.js.Stream(ctx, w.stream); err == nil {
		if msg, err := stream.GetMsg(ctx, floor); err == nil {
			end = msg.Time
		}
	}
	start := end.Add(-w.detector.Rules().MaxWindow() - time.Minute)
	replay, err := w.js.OrderedConsumer(ctx, w.stream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{w.subj.Events(events.DomainSecurity)},
		DeliverPolicy:  jetstream.DeliverByStartTimePolicy,
		OptStartTime:   &start,
	})
	if err != nil {
		return fmt.Errorf("replay consumer: %w", err)
	}
	replayed := 0
	for {
		batch, err := replay.Fetch(1000, jetstream.FetchMaxWait(500*time.Millisecond))
		if err != nil {
			return fmt.Errorf("replay: %w", err)
		}
		got := 0
		for m := range batch.Messages() {
			got++
			md, err := m.Metadata()
			if err != nil || md.Sequence.Stream > floor {
				w.log.Info().Int("events", replayed).Msg("detections rebuilt")
				return nil
			}
			if o, _, err := w.parse(m.Data()); err == nil {
				w.detector.Observe(o)
				replayed++
			}
		}
		if got == 0 {
			w.log.Info().Int("events", replayed).Msg("detections rebuilt")
			return nil
		}
	}
}

// parse decodes and validates one security event (envelope once, data
// through its schema) into an observation.
func (w *Worker) parse(raw []byte) (Observation, json.RawMessage, error) {
	var env schema.Envelope
	if err := json.Unmarshal(raw, &env); err != nil {
		return Observation{}, nil, &schema.ValidationError{Reason: "not JSON: " + err.Error()}
	}
	doc, err := w.validator.ValidateEnvelopeData(&env)
	if err != nil {
		return Observation{}, nil, err
	}
	if !strings.HasPrefix(env.Type, "medianest.security.") {
		return Observation{}, nil, &schema.ValidationError{Type: env.Type, Reason: "not a security event"}
	}
	at, _ := time.Parse(time.RFC3339Nano, env.Time) // validated above
	d := securityData(doc)
	name := strings.TrimSuffix(strings.TrimPrefix(env.Type, "medianest.security."), ".v1")
	return Observation{ID: env.ID, Name: name, Time: at, Data: d}, env.Data, nil
}

// securityData reads the fields the detections and the audit log use from
// data already decoded (and validated) by the schema validator.
func securityData(doc any) events.SecurityData {
	m, _ := doc.(map[string]any)
	str := func(k string) string { s, _ := m[k].(string); return s }
	d := events.SecurityData{
		IP: str("ip"), Namespace: str("namespace"), UserID: str("user_id"), SessionID: str("session_id"),
		JTI: str("jti"), Code: str("code"), Limit: str("limit"), Origin: str("origin"), Reason: str("reason"),
	}
	if roles, ok := m["required_roles"].([]any); ok {
		for _, r := range roles {
			if s, ok := r.(string); ok {
				d.RequiredRoles = append(d.RequiredRoles, s)
			}
		}
	}
	return d
}

// handle applies one parsed batch: audit rows, detections, alerts and
// blocks in one transaction, then the publishes, then the acks. Only
// events the audit log did not hold yet are observed, so a redelivered
// event is never counted twice.
func (w *Worker) handle(ctx context.Context, b *batch) error {
	start := time.Now()
	if len(b.msgs) == 0 {
		return nil
	}
	var (
		changed = map[string]*Alert{}
		order   []string
		blocks  []store.IPBlock
	)
	for _, r := range b.bad {
		if err := w.deadLetter(ctx, r.m, r.reason); err != nil {
			return err
		}
	}
	items := b.items
	if len(items) > 0 {
		recs := make([]store.AuditRecord, len(items))
		for i := range items {
			recs[i] = items[i].rec
		}
		err := w.store.DB.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
			fresh, err := store.InsertAudit(ctx, tx, recs)
			if err != nil {
				return err
			}
			for _, it := range items {
				if !fresh[it.o.ID] {
					continue // already stored and observed: a redelivery
				}
				for _, a := range w.detector.Observe(it.o) {
					if _, seen := changed[a.ID]; !seen {
						order = append(order, a.ID)
					}
					cp := *a
					if prev := changed[a.ID]; prev != nil && prev.Raised {
						cp.Raised = true // raised within this batch: still to publish
					}
					changed[a.ID] = &cp
				}
			}
			for _, id := range order {
				a := changed[id]
				if a.Raised && !w.cfg.NoIPBlocks && (a.Rule == RuleBruteForce || a.Rule == RuleCredentialStuffing) {
					now := time.Now().UTC()
					blocks = append(blocks, store.IPBlock{
						IP: strings.TrimPrefix(a.Subject, "ip:"), Reason: a.Summary(), AlertID: a.ID, CreatedAt: now, ExpiresAt: now.Add(w.cfg.BlockFor),
					})
				}
			}
			if len(order) > 0 {
				recs := make([]store.AlertRecord, len(order))
				for i, id := range order {
					recs[i] = alertRecord(changed[id], w.action(changed[id]))
				}
				if err := store.UpsertAlerts(ctx, tx, recs); err != nil {
					return err
				}
			}
			for i := range blocks {
				if err := store.UpsertBlock(ctx, tx, &blocks[i]); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("commit batch: %w", err)
		}
	}
	if err := w.publishRaised(ctx, order, changed, blocks); err != nil {
		return err
	}
	// One acknowledgement for the batch (dead letters included: they are
	// stored), synchronous, so the consumer's ack floor — where a rebuild
	// replays up to — is current.
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	_ = b.msgs[len(b.msgs)-1].DoubleAck(actx)
	cancel()
	w.metrics.events.WithLabelValues("stored").Add(float64(len(items)))
	w.metrics.batchTime.Observe(time.Since(start).Seconds())
	return nil
}

func (w *Worker) action(a *Alert) string {
	switch {
	case (a.Rule == RuleBruteForce || a.Rule == RuleCredentialStuffing) && !w.cfg.NoIPBlocks:
		return "ip_blocked"
	case a.Rule == RuleTokenReplay && !w.cfg.NoReplayRevocation:
		return "session_revoked"
	}
	return ""
}

// publishRaised publishes the alerts raised in a batch and their
// enforcement. Every publish has a stable id, so a retried batch does not
// publish twice.
func (w *Worker) publishRaised(ctx context.Context, order []string, changed map[string]*Alert, blocks []store.IPBlock) error {
	for _, id := range order {
		a := changed[id]
		if !a.Raised {
			continue
		}
		ev, err := alertEvent(w.cfg.Source, a, w.action(a))
		if err != nil {
			return err
		}
		raw, _ := json.Marshal(ev)
		if _, err := w.js.Publish(ctx, w.subj.Alert(a.Severity, a.Rule), raw, jetstream.WithMsgID("alert-"+a.ID)); err != nil {
			return fmt.Errorf("publish alert: %w", err)
		}
		w.metrics.alerts.WithLabelValues(a.Rule).Inc()
		w.log.Warn().Str("rule", a.Rule).Str("subject", a.Subject).Int("count", a.Count).Str("alert", a.ID).Msg("alert")
		if w.webhook != nil {
			w.webhook.enqueue(raw)
		}
		if a.Rule == RuleTokenReplay && !w.cfg.NoReplayRevocation {
			if err := w.revoke(ctx, a); err != nil {
				return err
			}
		}
	}
	for _, b := range blocks {
		msg, _ := json.Marshal(events.BlockMessage{IP: b.IP, Until: b.ExpiresAt, Reason: b.Reason, AlertID: b.AlertID})
		if err := w.nc.Publish(w.subj.Ctl(events.CtlBlock), msg); err != nil {
			return fmt.Errorf("publish block: %w", err)
		}
	}
	return nil
}

// revoke revokes a replayed session or token through the session stream.
func (w *Worker) revoke(ctx context.Context, a *Alert) error {
	d := events.SessionRevokedData{Reason: "token replay: " + a.Summary()}
	switch {
	case strings.HasPrefix(a.Subject, "session:"):
		d.SessionID = strings.TrimPrefix(a.Subject, "session:")
	case strings.HasPrefix(a.Subject, "jti:"):
		d.JTI = strings.TrimPrefix(a.Subject, "jti:")
	default:
		return nil
	}
	ev, err := events.New(w.cfg.Source, events.DomainSession, events.SessionRevoked, a.Subject, d)
	if err != nil {
		return err
	}
	ev.ID = "replay-" + a.ID
	raw, _ := json.Marshal(ev)
	if _, err := w.js.Publish(ctx, w.subj.Event(events.DomainSession, events.SessionRevoked), raw, jetstream.WithMsgID(ev.ID)); err != nil {
		return fmt.Errorf("publish revocation: %w", err)
	}
	return nil
}

func (w *Worker) deadLetter(ctx context.Context, m jetstream.Msg, reason string) error {
	if err := bus.PublishDeadLetter(ctx, w.js, w.subj, events.DomainSecurity, m, reason); err != nil {
		return err
	}
	w.metrics.deadLetters.Inc()
	w.metrics.events.WithLabelValues("dead_lettered").Inc()
	w.log.Warn().Str("subject", m.Subject()).Str("reason", reason).Msg("security event dead-lettered")
	return nil
}

func alertRecord(a *Alert, action string) store.AlertRecord {
	ids, _ := json.Marshal(a.EventIDs)
	return store.AlertRecord{
		ID: a.ID, Rule: a.Rule, Severity: a.Severity, Subject: a.Subject, Summary: a.Summary(), Count: a.Count,
		FirstSeen: a.FirstSeen.UTC(), LastSeen: a.LastSeen.UTC(), EventIDs: string(ids), Action: action,
	}
}

func alertEvent(source string, a *Alert, action string) (events.Event, error) {
	data := events.AlertData{
		Rule: a.Rule, Severity: a.Severity, Summary: a.Summary(), Subject: a.Subject, Count: a.Count,
		FirstSeen: a.FirstSeen.UTC(), LastSeen: a.LastSeen.UTC(), EventIDs: a.EventIDs, Action: action,
	}
	raw, err := json.Marshal(data)
	if err != nil {
		return events.Event{}, err
	}
	return events.Event{
		SpecVersion: events.SpecVersion, ID: a.ID, Source: source, Type: events.AlertType(a.Rule),
		Time: a.LastSeen.UTC(), Subject: a.Subject, DataContentType: "application/json", Data: raw,
	}, nil
}
