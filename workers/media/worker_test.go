package media

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/medianest/hub/events"
	"github.com/medianest/hub/internal/testkit"
	"github.com/medianest/hub/schema"
)

func start(t *testing.T, nc *nats.Conn, js jetstream.JetStream) func() {
	t.Helper()
	v, _ := schema.NewValidator()
	ctx, cancel := context.WithCancel(context.Background())
	w := New(Config{LeaseTTL: time.Second}, nc, js, v, zerolog.Nop(), nil)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = w.Run(ctx) }()
	return func() { cancel(); wg.Wait() }
}

func publish(t *testing.T, js jetstream.JetStream, subject string, body []byte) {
	t.Helper()
	if _, err := js.Publish(context.Background(), subject, body); err != nil {
		t.Fatal(err)
	}
}

func TestDeadLettersAndKeepsGoing(t *testing.T) {
	nc, js := testkit.Streams(t)
	dead := make(chan *nats.Msg, 8)
	sub, _ := nc.ChanSubscribe("medianest.deadletter.media", dead)
	defer sub.Unsubscribe()
	emits := make(chan *nats.Msg, 8)
	sub2, _ := nc.ChanSubscribe("medianest.hub.emit.>", emits)
	defer sub2.Unsubscribe()
	stop := start(t, nc, js)
	defer stop()

	bad := []struct {
		name, subject string
		body          []byte
		reason        string
	}{
		{"missing user_id", "medianest.events.media.download.progress", testkit.Envelope(t, events.DomainMedia, events.MediaDownloadProgress, map[string]any{"download_id": "d", "progress": 5}), "user_id"},
		{"progress 250", "medianest.events.media.download.progress", testkit.Envelope(t, events.DomainMedia, events.MediaDownloadProgress, map[string]any{"user_id": "u", "download_id": "d", "progress": 250}), "progress"},
		{"unknown name", "medianest.events.media.weather", testkit.Envelope(t, events.DomainMedia, "weather", map[string]any{"sky": "blue"}), "unknown event type"},
		{"not json", "medianest.events.media.download.progress", []byte("{"), "not JSON"},
	}
	for _, b := range bad {
		publish(t, js, b.subject, b.body)
	}
	publish(t, js, "medianest.events.media.library.item_available", testkit.Envelope(t, events.DomainMedia, events.MediaItemAvailable, map[string]any{"media_id": "m", "title": "T", "media_type": "movie"}))
	for _, b := range bad {
		select {
		case m := <-dead:
			reason := m.Header.Get(events.HeaderDeadLetterReason)
			if !strings.Contains(reason, b.reason) || m.Header.Get(events.HeaderDeadLetterSubject) != b.subject {
				t.Fatalf("%s: dead letter reason %q subject %q", b.name, reason, m.Header.Get(events.HeaderDeadLetterSubject))
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: no dead letter", b.name)
		}
	}
	select {
	case m := <-emits:
		if m.Subject != "medianest.hub.emit._root._all" {
			t.Fatalf("emit on %s", m.Subject)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the valid event after the bad ones was not routed")
	}
}

func TestServiceStatusSurvivesRestart(t *testing.T) {
	nc, js := testkit.Streams(t)
	stop := start(t, nc, js)
	for _, svc := range []string{"plex", "sonarr", "radarr"} {
		publish(t, js, "medianest.events.media.service.status", testkit.Envelope(t, events.DomainMedia, events.MediaServiceStatus, map[string]any{"service_id": svc, "status": "up"}))
	}
	kv, err := js.KeyValue(context.Background(), events.ServiceStatusBucket(""))
	if err != nil {
		t.Fatal(err)
	}
	count := func() int {
		keys, err := kv.ListKeys(context.Background())
		if err != nil {
			return 0
		}
		n := 0
		for range keys.Keys() {
			n++
		}
		return n
	}
	deadline := time.Now().Add(10 * time.Second)
	for count() != 3 {
		if time.Now().After(deadline) {
			t.Fatalf("%d statuses stored", count())
		}
		time.Sleep(20 * time.Millisecond)
	}
	stop()
	stop = start(t, nc, js)
	defer stop()
	publish(t, js, "medianest.events.media.service.status", testkit.Envelope(t, events.DomainMedia, events.MediaServiceStatus, map[string]any{"service_id": "plex", "status": "down"}))
	deadline = time.Now().Add(10 * time.Second)
	for {
		e, err := kv.Get(context.Background(), events.KVKey("plex"))
		if err == nil && strings.Contains(string(e.Value()), `"down"`) && count() == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after restart: %d statuses", count())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
