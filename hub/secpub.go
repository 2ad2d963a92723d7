package hub

import (
	"context"
	"encoding/json"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/medianest/hub/events"
)

// secEvent is a security event waiting to be published.
type secEvent struct {
	id   string
	name string
	at   time.Time
	subj string
	data events.SecurityData
}

// secPublisher publishes the node's security events to JetStream from its
// own goroutine. Connection handling only queues: when the bounded queue is
// full the event is dropped, counted, and logged at most once per interval.
type secPublisher struct {
	js       jetstream.JetStream
	subjects events.Subjects
	source   string
	log      zerolog.Logger
	queue    chan secEvent
	dropped  atomic.Uint64
	lastWarn atomic.Int64
	done     chan struct{}

	mu      sync.RWMutex // guards the queue against emit after close
	started bool
	closed  bool

	published, failed, lost func()
}

func newSecPublisher(nc *nats.Conn, subj events.Subjects, source string, queue int, log zerolog.Logger, onFail func()) (*secPublisher, error) {
	js, err := jetstream.New(nc,
		jetstream.WithPublishAsyncMaxPending(4096),
		jetstream.WithPublishAsyncErrHandler(func(_ jetstream.JetStream, m *nats.Msg, err error) {
			onFail()
			log.Warn().Err(err).Str("subject", m.Subject).Msg("security event not stored")
		}))
	if err != nil {
		return nil, err
	}
	return &secPublisher{
		js: js, subjects: subj, source: source, log: log,
		queue: make(chan secEvent, queue), done: make(chan struct{}),
	}, nil
}

// emit queues an event; it never blocks.
func (p *secPublisher) emit(name, subject string, data events.SecurityData) {
	if p == nil {
		return
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return
	}
	select {
	case p.queue <- secEvent{id: events.NewID(), name: name, at: time.Now().UTC(), subj: subject, data: data}:
	default:
		p.dropped.Add(1)
		if p.lost != nil {
			p.lost()
		}
		now := time.Now().UnixNano()
		if last := p.lastWarn.Load(); now-last > int64(10*time.Second) && p.lastWarn.CompareAndSwap(last, now) {
			p.log.Warn().Uint64("dropped_total", p.dropped.Load()).Msg("security event queue full; events dropped")
		}
	}
}

// start runs the publishing goroutine.
func (p *secPublisher) start() {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.started || p.closed {
		return
	}
	p.started = true
	go p.run()
}

func (p *secPublisher) run() {
	defer close(p.done)
	for e := range p.queue {
		data, _ := json.Marshal(e.data)
		raw, _ := json.Marshal(events.Event{
			SpecVersion: events.SpecVersion, ID: e.id, Source: p.source, Type: events.TypeName(events.DomainSecurity, e.name),
			Time: e.at, Subject: e.subj, DataContentType: "application/json", Data: data,
		})
		if _, err := p.js.PublishAsync(p.subjects.Event(events.DomainSecurity, e.name), raw, jetstream.WithMsgID(e.id)); err != nil {
			if p.failed != nil {
				p.failed()
			}
			p.log.Warn().Err(err).Msg("security event not published")
			continue
		}
		if p.published != nil {
			p.published()
		}
	}
}

// close publishes what is queued and waits for the acknowledgements,
// within ctx.
func (p *secPublisher) close(ctx context.Context) {
	if p == nil {
		return
	}
	p.mu.Lock()
	wasOpen, started := !p.closed, p.started
	p.closed = true
	if wasOpen {
		close(p.queue)
	}
	p.mu.Unlock()
	if !started {
		return
	}
	select {
	case <-p.done:
	case <-ctx.Done():
		return
	}
	select {
	case <-p.js.PublishAsyncComplete():
	case <-ctx.Done():
	}
}
