package bus

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/medianest/hub/events"
)

// LeaseBucket is the prefix of the key-value buckets that hold leases,
// one bucket per lease so that each has its own TTL.
const LeaseBucket = "MEDIANEST_LEASE_"

// Lease is held by one process at a time, so that a component that must
// see every event (the security worker's detections) runs once per
// cluster while standbys wait to take over.
type Lease struct {
	ctx    context.Context
	cancel context.CancelFunc
	kv     jetstream.KeyValue
	key    string
	done   chan struct{}
	rev    atomic.Uint64 // the revision this holder last wrote
}

// Acquire blocks until this holder owns the lease name or ctx is done.
// The lease lapses ttl after its holder stops renewing it (a crash); the
// returned lease's Context ends when it is lost.
func Acquire(ctx context.Context, js jetstream.JetStream, name, holder string, ttl time.Duration) (*Lease, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: LeaseBucket + name, Description: "MediaNest lease of " + name, TTL: ttl, History: 1, Storage: jetstream.FileStorage,
	})
	if err != nil {
		return nil, fmt.Errorf("lease bucket: %w", err)
	}
	for {
		rev, err := kv.Create(ctx, name, []byte(holder))
		if err == nil {
			l := &Lease{kv: kv, key: name, done: make(chan struct{})}
			l.rev.Store(rev)
			l.ctx, l.cancel = context.WithCancel(ctx)
			go l.renew(holder, ttl)
			return l, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			// A deleted key keeps a tombstone that Create may trip on:
			// retry after a short wait either way.
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(ttl / 4):
		}
	}
}

func (l *Lease) renew(holder string, ttl time.Duration) {
	defer close(l.done)
	t := time.NewTicker(ttl / 3)
	defer t.Stop()
	for {
		select {
		case <-l.ctx.Done():
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), ttl/3)
			next, err := l.kv.Update(ctx, l.key, []byte(holder), l.rev.Load())
			cancel()
			if err != nil {
				l.cancel() // lost: someone else may hold it now
				return
			}
			l.rev.Store(next)
		}
	}
}

// Context ends when the lease is lost or released.
func (l *Lease) Context() context.Context { return l.ctx }

// Release gives the lease up at once, so a standby takes over without
// waiting for it to lapse. Only this holder's own revision is deleted: a
// lease that lapsed and was taken by another holder stays theirs.
func (l *Lease) Release() {
	l.cancel()
	<-l.done
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = l.kv.Delete(ctx, l.key, jetstream.LastRevision(l.rev.Load()))
}

// RunLeased runs fn while this process holds the lease name, again and
// again, until ctx is done: a standby waits for the lease, an fn that
// fails is started again after a second, and the lease is released after
// each run so a standby can take over. It returns when ctx is done.
func RunLeased(ctx context.Context, js jetstream.JetStream, name string, ttl time.Duration, log zerolog.Logger, fn func(ctx context.Context) error) {
	holder := events.NewID()
	pause := func() bool {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(time.Second):
			return true
		}
	}
	for ctx.Err() == nil {
		lease, err := Acquire(ctx, js, name, holder, ttl)
		if err != nil {
			if ctx.Err() == nil {
				log.Warn().Err(err).Str("lease", name).Msg("cannot take the lease")
				pause()
			}
			continue
		}
		log.Info().Str("lease", name).Msg("active")
		err = fn(lease.Context())
		lease.Release()
		if err != nil && ctx.Err() == nil {
			log.Warn().Err(err).Str("lease", name).Msg("stopped; starting again")
			pause()
		}
	}
}
