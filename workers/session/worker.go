// Package session is the session worker: a durable JetStream consumer of
// medianest.events.session.> that applies session lifecycle events to the
// store exactly once in effect (idempotent by event id, acknowledged only
// after the commit), dead-letters events that fail their JSON Schema,
// closes the sockets a revocation or logout selects on every hub node, and
// records what it closed as a security.session_revoked event. It also
// removes expired sessions and revocations on a schedule.
//
// Several workers may run at once: they share the durable consumer.
package session

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/uptrace/bun"

	"github.com/medianest/hub/events"
	"github.com/medianest/hub/internal/bus"
	"github.com/medianest/hub/internal/cluster"
	"github.com/medianest/hub/internal/store"
	"github.com/medianest/hub/schema"
)

// Config configures a [Worker]. Zero values take the documented defaults.
type Config struct {
	// Prefix is the subject prefix; default "medianest".
	Prefix string
	// Durable is the consumer name shared by every session worker;
	// default "session-worker".
	Durable string
	// MaxAckPending bounds the events in flight; default 256.
	MaxAckPending int
	// TokenMaxLifetime is how long a revocation matters; default 24h.
	TokenMaxLifetime time.Duration
	// CleanupInterval is how often expired rows are removed; default 10m.
	CleanupInterval time.Duration
	// ClusterTimeout bounds the wait for hub nodes' replies; default 1s.
	ClusterTimeout time.Duration
	// MaxBackoff caps the redelivery delay after a failure; default 30s.
	MaxBackoff time.Duration
	// ProcessedRetention is how long applied event ids are remembered; it
	// must cover the session stream's retention. Default 7 days.
	ProcessedRetention time.Duration
	// Source names the worker in the events it publishes.
	Source string
}

func (c *Config) setDefaults() {
	if c.Prefix == "" {
		c.Prefix = events.DefaultPrefix
	}
	if c.Durable == "" {
		c.Durable = "session-worker"
	}
	if c.MaxAckPending <= 0 {
		c.MaxAckPending = 256
	}
	if c.TokenMaxLifetime <= 0 {
		c.TokenMaxLifetime = 24 * time.Hour
	}
	if c.CleanupInterval <= 0 {
		c.CleanupInterval = 10 * time.Minute
	}
	if c.ClusterTimeout <= 0 {
		c.ClusterTimeout = time.Second
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = 30 * time.Second
	}
	if c.ProcessedRetention <= 0 {
		c.ProcessedRetention = 7 * 24 * time.Hour
	}
	if c.Source == "" {
		c.Source = "medianest-session-worker"
	}
}

// Worker is one session worker.
type Worker struct {
	cfg       Config
	nc        *nats.Conn
	js        jetstream.JetStream
	store     *store.Store
	validator *schema.Validator
	log       zerolog.Logger
	subj      events.Subjects
	peers     *cluster.Peers
	metrics   metrics
}

type metrics struct {
	events      *prometheus.CounterVec
	deadLetters prometheus.Counter
	applyTime   prometheus.Histogram
}

// New returns a worker; reg receives its metrics (nil = none).
func New(cfg Config, nc *nats.Conn, js jetstream.JetStream, st *store.Store, v *schema.Validator, log zerolog.Logger, reg prometheus.Registerer) *Worker {
	cfg.setDefaults()
	w := &Worker{
		cfg: cfg, nc: nc, js: js, store: st, validator: v,
		log:   log.With().Str("worker", "session").Logger(),
		subj:  events.Subjects{Prefix: cfg.Prefix},
		peers: cluster.NewPeers("", 15*time.Second),
		metrics: metrics{
			events: prometheus.NewCounterVec(prometheus.CounterOpts{
				Name: "medianest_session_worker_events_total", Help: "Session events handled by the worker, by result.",
			}, []string{"result"}),
			deadLetters: prometheus.NewCounter(prometheus.CounterOpts{
				Name: "medianest_session_worker_dead_letters_total", Help: "Session events sent to the dead-letter subject.",
			}),
			applyTime: prometheus.NewHistogram(prometheus.HistogramOpts{
				Name: "medianest_session_worker_apply_seconds", Help: "Time to apply one session event, commit included.",
				Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
			}),
		},
	}
	if reg != nil {
		reg.MustRegister(w.metrics.events, w.metrics.deadLetters, w.metrics.applyTime)
	}
	return w
}

// Run consumes until ctx is done. It recreates the consumer if it is
// deleted and returns nil on cancellation.
func (w *Worker) Run(ctx context.Context) error {
	sub, err := w.peers.Watch(w.nc, w.subj)
	if err != nil {
		return fmt.Errorf("session worker: watch nodes: %w", err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	go w.cleanupLoop(ctx)
	for {
		err := w.consume(ctx)
		if ctx.Err() != nil {
			return nil
		}
		w.log.Warn().Err(err).Msg("session consumer stopped; starting again")
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
}

func (w *Worker) consume(ctx context.Context) error {
	stream := events.StreamName(w.cfg.Prefix, events.DomainSession)
	cons, err := w.js.CreateOrUpdateConsumer(ctx, stream, jetstream.ConsumerConfig{
		Durable:       w.cfg.Durable,
		Description:   "MediaNest session worker",
		FilterSubject: w.subj.Events(events.DomainSession),
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       30 * time.Second,
		MaxDeliver:    -1,
		MaxAckPending: w.cfg.MaxAckPending,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return fmt.Errorf("consumer %s: %w", w.cfg.Durable, err)
	}
	stopped := make(chan error, 1)
	cc, err := cons.Consume(func(m jetstream.Msg) { w.handle(ctx, m) },
		jetstream.PullHeartbeat(5*time.Second),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			if errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, jetstream.ErrConsumerNotFound) {
				select {
				case stopped <- err:
				default:
				}
				return
			}
			w.log.Debug().Err(err).Msg("session consumer")
		}))
	if err != nil {
		return fmt.Errorf("consume: %w", err)
	}
	select {
	case <-ctx.Done():
		// Hand back what was fetched but not handled, so another worker
		// (or this one, restarted) gets it at once instead of after AckWait.
		cc.Drain()
		<-cc.Closed()
		return ctx.Err()
	case err := <-stopped:
		cc.Stop()
		return err
	}
}

// handle processes one event; the message is acknowledged only once its
// effect is durable, and redelivered with a capped backoff otherwise.
func (w *Worker) handle(ctx context.Context, m jetstream.Msg) {
	if ctx.Err() != nil {
		_ = m.Nak() // stopping: redeliver now, elsewhere
		return
	}
	start := time.Now()
	typ, err := w.validator.Validate(m.Data())
	if err != nil {
		w.deadLetter(ctx, m, err.Error())
		return
	}
	var ev events.Event
	if err := json.Unmarshal(m.Data(), &ev); err != nil {
		w.deadLetter(ctx, m, "envelope: "+err.Error())
		return
	}
	applied, err := w.store.ApplyOnce(ctx, w.cfg.Durable, ev.ID, func(ctx context.Context, tx bun.Tx) error {
		return w.apply(ctx, tx, typ, ev)
	})
	if err != nil {
		w.retry(m, err)
		return
	}
	// Closing sockets and recording it are idempotent, so they run again
	// on a redelivery of an event whose commit was not acknowledged.
	if typ == events.TypeName(events.DomainSession, events.SessionRevoked) || typ == events.TypeName(events.DomainSession, events.SessionEnded) {
		if err := w.enforce(ctx, ev, typ); err != nil {
			w.retry(m, err)
			return
		}
	}
	if err := ack(ctx, m); err != nil {
		w.log.Warn().Err(err).Str("event", ev.ID).Msg("ack failed; the event will be redelivered and skipped")
	}
	result := "applied"
	if !applied {
		result = "duplicate"
	}
	w.metrics.events.WithLabelValues(result).Inc()
	w.metrics.applyTime.Observe(time.Since(start).Seconds())
}

func (w *Worker) apply(ctx context.Context, tx bun.Tx, typ string, ev events.Event) error {
	switch typ {
	case events.TypeName(events.DomainSession, events.SessionCreated):
		var d events.SessionCreatedData
		if err := json.Unmarshal(ev.Data, &d); err != nil {
			return err
		}
		sess := &store.Session{ID: d.SessionID, UserID: d.UserID, CreatedAt: ev.Time.UTC(), ExpiresAt: d.ExpiresAt.UTC(), IP: d.IP, UserAgent: d.UserAgent}
		if d.TokenSHA256 != "" {
			sess.TokenSHA256 = &d.TokenSHA256
		}
		return store.UpsertSession(ctx, tx, sess)
	case events.TypeName(events.DomainSession, events.SessionRefreshed):
		var d events.SessionRefreshedData
		if err := json.Unmarshal(ev.Data, &d); err != nil {
			return err
		}
		_, err := store.RefreshSession(ctx, tx, d.SessionID, d.ExpiresAt)
		return err
	case events.TypeName(events.DomainSession, events.SessionEnded):
		var d events.SessionEndedData
		if err := json.Unmarshal(ev.Data, &d); err != nil {
			return err
		}
		return store.EndSession(ctx, tx, d.SessionID, ev.Time, ev.Time.Add(w.cfg.TokenMaxLifetime))
	case events.TypeName(events.DomainSession, events.SessionRevoked):
		var d events.SessionRevokedData
		if err := json.Unmarshal(ev.Data, &d); err != nil {
			return err
		}
		kind, value := d.Kind()
		return store.Revoke(ctx, tx, &store.Revocation{
			Kind: kind, Value: value, Reason: d.Reason, RevokedAt: ev.Time,
			ExpiresAt: ev.Time.Add(w.cfg.TokenMaxLifetime), EventID: ev.ID,
		})
	}
	return nil
}

// enforce asks every hub node to apply the event now and reply with what
// it closed, then records the total as security.session_revoked.
func (w *Worker) enforce(ctx context.Context, ev events.Event, typ string) error {
	raw, _ := json.Marshal(ev)
	replies, err := cluster.Gather(ctx, w.nc, w.subj.Ctl(events.CtlRevoke), raw, w.peers.Count(), w.cfg.ClusterTimeout)
	if err != nil {
		return fmt.Errorf("ask hub nodes: %w", err)
	}
	closed := 0
	for _, r := range replies {
		closed += r.Count
	}
	data := events.SecuritySessionRevokedData{SocketsClosed: closed}
	if typ == events.TypeName(events.DomainSession, events.SessionEnded) {
		var d events.SessionEndedData
		_ = json.Unmarshal(ev.Data, &d)
		data.SessionID, data.Reason = d.SessionID, "session ended"
	} else {
		var d events.SessionRevokedData
		_ = json.Unmarshal(ev.Data, &d)
		data.SessionID, data.UserID, data.JTI, data.Reason = d.SessionID, d.UserID, d.JTI, d.Reason
	}
	out, err := events.New(w.cfg.Source, events.DomainSecurity, "session_revoked", ev.Subject, data)
	if err != nil {
		return err
	}
	out.ID = "session-revoked-" + ev.ID // stable, so a redelivery is deduplicated
	body, err := json.Marshal(out)
	if err != nil {
		return err
	}
	if _, err := w.js.Publish(ctx, w.subj.Event(events.DomainSecurity, "session_revoked"), body, jetstream.WithMsgID(out.ID)); err != nil {
		return fmt.Errorf("publish security.session_revoked: %w", err)
	}
	w.log.Info().Str("event", ev.ID).Int("sockets_closed", closed).Int("nodes", len(replies)).Msg("session change enforced")
	return nil
}

// deadLetter moves an invalid event to the dead-letter subject with the
// reason; the original is acknowledged only once the dead letter is stored.
func (w *Worker) deadLetter(ctx context.Context, m jetstream.Msg, reason string) {
	if err := bus.DeadLetter(ctx, w.js, w.subj, events.DomainSession, m, reason); err != nil {
		w.retry(m, err)
		return
	}
	w.metrics.deadLetters.Inc()
	w.metrics.events.WithLabelValues("dead_lettered").Inc()
	w.log.Warn().Str("subject", m.Subject()).Str("reason", reason).Msg("session event dead-lettered")
}

// ack confirms a message even while the worker is stopping: the effect is
// already durable, and an unconfirmed message would only be redelivered.
func ack(ctx context.Context, m jetstream.Msg) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	return m.DoubleAck(ctx)
}

func (w *Worker) retry(m jetstream.Msg, err error) {
	if errors.Is(err, context.Canceled) {
		_ = m.Nak() // stopping: redeliver now, elsewhere
		return
	}
	attempt := uint64(1)
	if md, merr := m.Metadata(); merr == nil {
		attempt = md.NumDelivered
	}
	delay := backoff(attempt, w.cfg.MaxBackoff)
	w.metrics.events.WithLabelValues("retried").Inc()
	w.log.Warn().Err(err).Uint64("attempt", attempt).Dur("retry_in", delay).Msg("session event not applied")
	_ = m.NakWithDelay(delay)
}

// backoff is 100ms doubled per attempt, capped.
func backoff(attempt uint64, limit time.Duration) time.Duration {
	d := 100 * time.Millisecond
	for i := uint64(1); i < attempt && d < limit; i++ {
		d *= 2
	}
	return min(d, limit)
}

func (w *Worker) cleanupLoop(ctx context.Context) {
	t := time.NewTicker(w.cfg.CleanupInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			res, err := w.store.Cleanup(ctx, now, w.cfg.TokenMaxLifetime, w.cfg.ProcessedRetention)
			if err != nil {
				w.log.Warn().Err(err).Msg("cleanup failed")
				continue
			}
			w.log.Debug().Int64("sessions", res.Sessions).Int64("revocations", res.Revocations).
				Int64("processed_events", res.ProcessedEvents).Msg("cleanup")
		}
	}
}
