// Package media is the media worker: it consumes
// medianest.events.media.>, validates each event against its JSON Schema
// (dead-lettering the invalid ones with the reason), routes it through the
// routing table ([Routes]) to hub.emit subjects, and acknowledges it after
// the emit is published. download.progress is coalesced per download (at
// most MaxProgressRate a second, the latest value winning); a terminal
// download event flushes any pending progress first and is never dropped.
// service.status is kept as the last known status in a key-value bucket,
// and request.status records who owns each request.
//
// Coalescing needs every event of a download in one place, so one media
// worker is active per cluster (a lease, as for the security worker);
// others wait as standbys.
package media

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/medianest/hub/events"
	"github.com/medianest/hub/internal/bus"
	"github.com/medianest/hub/schema"
)

// Config configures a [Worker]. Zero values take the documented defaults.
type Config struct {
	// Prefix is the subject prefix; default "medianest".
	Prefix string
	// Durable is the consumer name; default "media-worker".
	Durable string
	// Routes is the routing table; default [DefaultRoutes].
	Routes Routes
	// MaxProgressRate is the most download:progress updates per download
	// per second; default 4. Negative turns coalescing off.
	MaxProgressRate float64
	// LeaseTTL is how long a crashed active worker holds the lease; default 10s.
	LeaseTTL time.Duration
	// Source names the worker.
	Source string
}

func (c *Config) setDefaults() {
	if c.Prefix == "" {
		c.Prefix = events.DefaultPrefix
	}
	if c.Durable == "" {
		c.Durable = "media-worker"
	}
	if c.Routes == nil {
		c.Routes = DefaultRoutes()
	}
	if c.MaxProgressRate == 0 {
		c.MaxProgressRate = 4
	}
	if c.LeaseTTL <= 0 {
		c.LeaseTTL = 10 * time.Second
	}
	if c.Source == "" {
		c.Source = "medianest-media-worker"
	}
}

// Worker is the media worker.
type Worker struct {
	cfg       Config
	nc        *nats.Conn
	js        jetstream.JetStream
	validator *schema.Validator
	log       zerolog.Logger
	subj      events.Subjects
	status    jetstream.KeyValue
	owners    jetstream.KeyValue
	interval  time.Duration
	metrics   metrics

	mu        sync.Mutex
	downloads map[string]*download
	finished  map[string]time.Time // downloads that ended, for late progress
}

type metrics struct {
	consumed, routed, coalesced, deadLetters prometheus.Counter
	latency                                  prometheus.Histogram
}

// download is the coalescing state of one download.
type download struct {
	lastEmit time.Time
	lastSeq  uint64 // stream sequence of the newest progress taken
	pending  *pending
	timer    *time.Timer
}

type pending struct {
	msg   jetstream.Msg
	seq   uint64
	emits []Emit
	data  json.RawMessage
	at    time.Time
}

// finishedTTL is how long late progress of an ended download is dropped.
const finishedTTL = 10 * time.Minute

// New returns a worker; reg receives its metrics (nil = none).
func New(cfg Config, nc *nats.Conn, js jetstream.JetStream, v *schema.Validator, log zerolog.Logger, reg prometheus.Registerer) *Worker {
	cfg.setDefaults()
	w := &Worker{
		cfg: cfg, nc: nc, js: js, validator: v,
		log:       log.With().Str("worker", "media").Logger(),
		subj:      events.Subjects{Prefix: cfg.Prefix},
		downloads: map[string]*download{},
		finished:  map[string]time.Time{},
		metrics: metrics{
			consumed:    prometheus.NewCounter(prometheus.CounterOpts{Name: "medianest_media_events_consumed_total", Help: "Media events consumed."}),
			routed:      prometheus.NewCounter(prometheus.CounterOpts{Name: "medianest_media_events_routed_total", Help: "Media events emitted to hub nodes."}),
			coalesced:   prometheus.NewCounter(prometheus.CounterOpts{Name: "medianest_media_events_coalesced_total", Help: "download.progress events replaced by a later one before they went out."}),
			deadLetters: prometheus.NewCounter(prometheus.CounterOpts{Name: "medianest_media_events_dead_lettered_total", Help: "Media events sent to the dead-letter subject."}),
			latency: prometheus.NewHistogram(prometheus.HistogramOpts{
				Name: "medianest_media_route_latency_seconds", Help: "From an event's time to its emit.",
				Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
			}),
		},
	}
	if cfg.MaxProgressRate > 0 {
		w.interval = time.Duration(float64(time.Second) / cfg.MaxProgressRate)
	}
	if reg != nil {
		reg.MustRegister(w.metrics.consumed, w.metrics.routed, w.metrics.coalesced, w.metrics.deadLetters, w.metrics.latency)
	}
	return w
}

// Run consumes until ctx is done; it returns nil on cancellation.
func (w *Worker) Run(ctx context.Context) error {
	var err error
	if w.status, err = w.js.KeyValue(ctx, events.ServiceStatusBucket(w.cfg.Prefix)); err != nil {
		return fmt.Errorf("media worker: status bucket: %w", err)
	}
	if w.owners, err = w.js.KeyValue(ctx, events.RequestOwnersBucket(w.cfg.Prefix)); err != nil {
		return fmt.Errorf("media worker: request owners bucket: %w", err)
	}
	bus.RunLeased(ctx, w.js, w.cfg.Durable, w.cfg.LeaseTTL, w.log, func(ctx context.Context) error {
		defer w.flushAll()
		return w.consume(ctx)
	})
	return nil
}

func (w *Worker) consume(ctx context.Context) error {
	cons, err := w.js.CreateOrUpdateConsumer(ctx, events.StreamName(w.cfg.Prefix, events.DomainMedia), jetstream.ConsumerConfig{
		Durable:       w.cfg.Durable,
		Description:   "MediaNest media worker",
		FilterSubject: w.subj.Events(events.DomainMedia),
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       30 * time.Second,
		MaxDeliver:    -1,
		MaxAckPending: 20_000,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return fmt.Errorf("consumer: %w", err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(1000), jetstream.PullHeartbeat(5*time.Second))
	if err != nil {
		return err
	}
	defer it.Stop()
	stop := context.AfterFunc(ctx, func() { bus.HandBack(it) })
	defer stop()
	sweep := time.NewTicker(time.Minute)
	defer sweep.Stop()
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-sweep.C:
				w.sweep(now)
			}
		}
	}()
	for {
		m, err := it.Next()
		if err != nil {
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) || ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, jetstream.ErrNoHeartbeat) {
				continue
			}
			return err
		}
		w.handle(ctx, m)
	}
}

func (w *Worker) handle(ctx context.Context, m jetstream.Msg) {
	w.metrics.consumed.Inc()
	var env schema.Envelope
	if err := json.Unmarshal(m.Data(), &env); err != nil {
		w.deadLetter(ctx, m, "not JSON: "+err.Error())
		return
	}
	if err := w.validator.ValidateEnvelope(&env); err != nil {
		w.deadLetter(ctx, m, err.Error())
		return
	}
	name := strings.TrimSuffix(strings.TrimPrefix(env.Type, "medianest.media."), ".v1")
	var data map[string]any
	_ = json.Unmarshal(env.Data, &data) // validated
	emits, err := w.cfg.Routes.Resolve(name, data)
	if err != nil {
		w.deadLetter(ctx, m, err.Error())
		return
	}
	at, _ := time.Parse(time.RFC3339Nano, env.Time)
	switch name {
	case events.MediaServiceStatus:
		id, _ := data["service_id"].(string)
		if _, err := w.status.Put(ctx, events.KVKey(id), env.Data); err != nil {
			w.retry(m, fmt.Errorf("store service status: %w", err))
			return
		}
	case events.MediaRequestStatus:
		req, _ := data["request_id"].(string)
		user, _ := data["user_id"].(string)
		if _, err := w.owners.Put(ctx, events.KVKey(req), []byte(user)); err != nil {
			w.retry(m, fmt.Errorf("store request owner: %w", err))
			return
		}
	}
	p := &pending{msg: m, emits: emits, data: env.Data, at: at}
	if md, err := m.Metadata(); err == nil {
		p.seq = md.Sequence.Stream
	}
	dl, _ := data["download_id"].(string)
	switch {
	case name == events.MediaDownloadProgress && w.interval > 0:
		w.progress(dl, p)
	case strings.HasPrefix(name, "download."):
		w.terminal(dl, p)
	default:
		w.send(p)
	}
}

// progress emits now, or keeps the latest update until the download's
// next slot.
func (w *Worker) progress(id string, p *pending) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, done := w.finished[id]; done {
		_ = p.msg.Ack() // late progress of an ended download: never after its end
		w.metrics.coalesced.Inc()
		return
	}
	d := w.downloads[id]
	if d == nil {
		d = &download{}
		w.downloads[id] = d
	}
	if p.seq != 0 && p.seq < d.lastSeq {
		_ = p.msg.Ack() // older than what was taken already (a redelivery)
		w.metrics.coalesced.Inc()
		return
	}
	d.lastSeq = p.seq
	now := time.Now()
	if d.pending == nil && now.Sub(d.lastEmit) >= w.interval {
		w.send(p)
		d.lastEmit = now
		return
	}
	if d.pending != nil {
		_ = d.pending.msg.Ack() // replaced by a later value: done with it
		w.metrics.coalesced.Inc()
	}
	d.pending = p
	if d.timer == nil {
		d.timer = time.AfterFunc(d.lastEmit.Add(w.interval).Sub(now), func() { w.flush(id) })
	}
}

func (w *Worker) flush(id string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	d := w.downloads[id]
	if d == nil {
		return
	}
	d.timer = nil
	if d.pending != nil {
		w.send(d.pending)
		d.pending = nil
		d.lastEmit = time.Now()
	}
}

// terminal sends any pending progress of the download, then the terminal
// event, and forgets the download.
func (w *Worker) terminal(id string, p *pending) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if d := w.downloads[id]; d != nil {
		if d.timer != nil {
			d.timer.Stop()
		}
		if d.pending != nil {
			if !w.send(d.pending) {
				// The progress goes back for redelivery: so does the end,
				// which must not overtake it.
				d.pending = nil
				_ = p.msg.NakWithDelay(time.Second)
				return
			}
			d.pending = nil
		}
		delete(w.downloads, id)
	}
	if w.send(p) {
		w.finished[id] = time.Now()
	}
}

// sweep forgets idle downloads and old ends.
func (w *Worker) sweep(now time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for id, d := range w.downloads {
		if d.pending == nil && now.Sub(d.lastEmit) > time.Minute {
			delete(w.downloads, id)
		}
	}
	for id, at := range w.finished {
		if now.Sub(at) > finishedTTL {
			delete(w.finished, id)
		}
	}
}

// flushAll sends every pending progress (when stopping).
func (w *Worker) flushAll() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for id, d := range w.downloads {
		if d.timer != nil {
			d.timer.Stop()
		}
		if d.pending != nil {
			w.send(d.pending)
		}
		delete(w.downloads, id)
	}
}

// send publishes an event's emits and acknowledges it. The ack goes out on
// the same connection after the emits, so the server sees the emits first:
// if the connection drops in between, the event is redelivered.
// It reports whether the event went out.
func (w *Worker) send(p *pending) bool {
	now := time.Now()
	for _, e := range p.emits {
		subject, err := w.subj.Emit(e.Namespace, e.Room)
		if err != nil {
			continue
		}
		body, _ := json.Marshal(events.EmitMessage{Event: e.Event, Data: p.data, TS: now.UnixNano()})
		if err := w.nc.Publish(subject, body); err != nil {
			w.retry(p.msg, fmt.Errorf("emit: %w", err))
			return false
		}
	}
	_ = p.msg.Ack()
	w.metrics.routed.Inc()
	if !p.at.IsZero() {
		w.metrics.latency.Observe(now.Sub(p.at).Seconds())
	}
	return true
}

func (w *Worker) retry(m jetstream.Msg, err error) {
	delay := time.Second
	if md, merr := m.Metadata(); merr == nil {
		delay = min(time.Duration(md.NumDelivered)*250*time.Millisecond, 30*time.Second)
	}
	w.log.Warn().Err(err).Dur("retry_in", delay).Msg("media event not routed")
	_ = m.NakWithDelay(delay)
}

func (w *Worker) deadLetter(ctx context.Context, m jetstream.Msg, reason string) {
	if err := bus.DeadLetter(ctx, w.js, w.subj, events.DomainMedia, m, reason); err != nil {
		w.retry(m, err)
		return
	}
	w.metrics.deadLetters.Inc()
	w.log.Warn().Str("subject", m.Subject()).Str("reason", reason).Msg("media event dead-lettered")
}
