// Package bus declares the JetStream streams of the public contract and
// creates or updates them at start, so that every component (hub nodes and
// workers, in any order) finds them in place.
package bus

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/medianest/hub/events"
)

// StreamOptions size the streams.
type StreamOptions struct {
	// Prefix is the subject prefix; "" means "medianest".
	Prefix string
	// MaxAge is how long events are kept; zero means 7 days.
	MaxAge time.Duration
	// Replicas is the stream replication in a cluster; zero means 1.
	Replicas int
}

// Domains are the event domains that have a stream.
var Domains = []string{events.DomainSession, events.DomainSecurity, events.DomainMedia}

// EnsureStreams creates or updates the event streams of every domain, the
// alerts stream, the dead-letter stream and the media key-value buckets. File storage; duplicates within
// two minutes (same Nats-Msg-Id) are dropped.
func EnsureStreams(ctx context.Context, js jetstream.JetStream, o StreamOptions) error {
	if o.Prefix == "" {
		o.Prefix = events.DefaultPrefix
	}
	if o.MaxAge == 0 {
		o.MaxAge = 7 * 24 * time.Hour
	}
	if o.Replicas == 0 {
		o.Replicas = 1
	}
	subj := events.Subjects{Prefix: o.Prefix}
	cfgs := make([]jetstream.StreamConfig, 0, len(Domains)+2)
	for _, d := range Domains {
		cfgs = append(cfgs, jetstream.StreamConfig{
			Name:        events.StreamName(o.Prefix, d),
			Description: "MediaNest " + d + " events",
			Subjects:    []string{subj.Events(d)},
		})
	}
	cfgs = append(cfgs,
		jetstream.StreamConfig{
			Name: events.StreamName(o.Prefix, "alerts"), Description: "MediaNest security alerts",
			Subjects: []string{subj.Alerts()},
		},
		jetstream.StreamConfig{
			Name: events.StreamName(o.Prefix, "deadletter"), Description: "Events that failed validation, with the reason",
			Subjects: []string{subj.DeadLetters()},
		},
	)
	for _, kv := range []jetstream.KeyValueConfig{
		{Bucket: events.ServiceStatusBucket(o.Prefix), Description: "Last known status of each monitored service", History: 1},
		{Bucket: events.RequestOwnersBucket(o.Prefix), Description: "The user of each media request", History: 1, TTL: 30 * 24 * time.Hour},
	} {
		kv.Storage = jetstream.FileStorage
		kv.Replicas = o.Replicas
		if _, err := js.CreateOrUpdateKeyValue(ctx, kv); err != nil {
			return fmt.Errorf("bus: key-value bucket %s: %w", kv.Bucket, err)
		}
	}
	for _, c := range cfgs {
		c.Storage = jetstream.FileStorage
		c.MaxAge = o.MaxAge
		c.Duplicates = 2 * time.Minute
		c.Replicas = o.Replicas
		c.Discard = jetstream.DiscardOld
		if _, err := js.CreateOrUpdateStream(ctx, c); err != nil {
			return fmt.Errorf("bus: stream %s: %w", c.Name, err)
		}
	}
	return nil
}

// HandBack stops a message iterator and naks, in order, what it had
// fetched but not handed out, so another consumer gets it now rather than
// after the ack wait (and before newer messages).
func HandBack(it jetstream.MessagesContext) {
	it.Drain()
	for {
		m, err := it.Next(jetstream.NextMaxWait(100 * time.Millisecond))
		if err != nil {
			return
		}
		_ = m.Nak()
	}
}

// DeadLetter stores an invalid event on the domain's dead-letter subject
// with the reason, the original subject and stream sequence in headers
// (deduplicated by that sequence), and then acknowledges the original.
// The original is acknowledged only once the dead letter is stored: on an
// error it is left for the caller to redeliver, so nothing is lost.
func DeadLetter(ctx context.Context, js jetstream.JetStream, subj events.Subjects, domain string, m jetstream.Msg, reason string) error {
	if err := PublishDeadLetter(ctx, js, subj, domain, m, reason); err != nil {
		return err
	}
	_ = m.Ack()
	return nil
}

// PublishDeadLetter is [DeadLetter] without the acknowledgement, for a
// consumer that acknowledges whole batches.
func PublishDeadLetter(ctx context.Context, js jetstream.JetStream, subj events.Subjects, domain string, m jetstream.Msg, reason string) error {
	msg := nats.NewMsg(subj.DeadLetter(domain))
	msg.Data = m.Data()
	msg.Header.Set(events.HeaderDeadLetterReason, reason)
	msg.Header.Set(events.HeaderDeadLetterSubject, m.Subject())
	if md, err := m.Metadata(); err == nil {
		seq := strconv.FormatUint(md.Sequence.Stream, 10)
		msg.Header.Set(events.HeaderDeadLetterStream, seq)
		msg.Header.Set(nats.MsgIdHdr, "dl-"+md.Stream+"-"+seq)
	}
	if _, err := js.PublishMsg(ctx, msg); err != nil {
		return fmt.Errorf("dead-letter: %w", err)
	}
	return nil
}
