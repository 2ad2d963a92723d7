package loadtest

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/medianest/hub/events"
	"github.com/medianest/hub/hub/auth"
)

// MediaOptions configure the media benchmark.
type MediaOptions struct {
	Events    int  // events per run, default 50,000
	Coalesce  bool // coalesce progress (4/s per download)
	Downloads int  // distinct downloads the progress spreads over, default 1,000
	Users     int  // users (one connected client each) the downloads belong to, default 100
	Rate      int  // events published per second; 0 = as fast as JetStream takes them
}

// MediaResult is the benchmark's report.
type MediaResult struct {
	Scenario     string      `json:"scenario"`
	Coalescing   bool        `json:"coalescing"`
	Rate         int         `json:"publish_rate"`
	Events       int         `json:"events"`
	Delivered    int64       `json:"delivered_to_client"`
	Seconds      float64     `json:"seconds"`
	EventsPerSec float64     `json:"events_per_second"`
	Latency      Percentiles `json:"publish_to_client"`
}

// RunMedia starts one hub process (hub and media worker) on an embedded
// NATS server, connects one client for each user the downloads belong to, stores
// Events download.progress events on the media stream as fast as
// JetStream takes them, and measures how fast they are consumed and
// routed, and the latency from the publish to the client.
func RunMedia(ctx context.Context, o MediaOptions, log zerolog.Logger) (MediaResult, error) {
	if o.Events <= 0 {
		o.Events = 50_000
	}
	if o.Downloads <= 0 {
		o.Downloads = 1000
	}
	if o.Users <= 0 {
		o.Users = 100
	}
	res := MediaResult{Scenario: "media-worker", Coalescing: o.Coalesce, Events: o.Events, Rate: o.Rate}
	rate := "0"
	if o.Coalesce {
		rate = "4"
	}
	b, err := newBench(ctx, 1, "", log, "MEDIANEST_SESSION_MODE=stateless", "MEDIANEST_COMPONENTS=hub,media-worker", "MEDIANEST_MEDIA_PROGRESS_RATE="+rate)
	if err != nil {
		return res, err
	}
	defer b.close()
	nodes, ns := b.nodes, b.ns
	poller, err := NewPoller(1)
	if err != nil {
		return res, err
	}
	defer poller.Close()

	var mu sync.Mutex
	var lat []time.Duration
	var delivered atomic.Int64
	onEvent := func(frame []byte) {
		var args []json.RawMessage
		if json.Unmarshal(frame, &args) != nil || len(args) < 2 {
			return
		}
		var d struct {
			SentNS int64 `json:"sent_ns"`
		}
		_ = json.Unmarshal(args[1], &d)
		delivered.Add(1)
		if d.SentNS > 0 {
			mu.Lock()
			lat = append(lat, time.Since(time.Unix(0, d.SentNS)))
			mu.Unlock()
		}
	}
	for u := range o.Users {
		tok, _ := auth.Mint([]byte(benchSecret), auth.MintOptions{UserID: fmt.Sprint("bench-user-", u), Roles: []string{"user"}, Issuer: "medianest", Audience: "medianest-users"})
		c, err := Dial(ctx, nodes[0].url, "/", tok)
		if err != nil {
			return res, err
		}
		defer c.Close()
		c.OnEvent = onEvent
		if err := poller.Add(c); err != nil {
			return res, err
		}
	}

	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		return res, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		return res, err
	}
	start := time.Now()
	for i := range o.Events {
		if o.Rate > 0 {
			if pause := time.Until(start.Add(time.Duration(i) * time.Second / time.Duration(o.Rate))); pause > 0 {
				time.Sleep(pause)
			}
		}
		now := time.Now()
		// The publish time rides in an extra field (schemas allow them),
		// so the client measures latency on the same clock.
		dl := i % o.Downloads
		data, _ := json.Marshal(map[string]any{"user_id": fmt.Sprint("bench-user-", dl%o.Users), "download_id": fmt.Sprint("d", dl), "progress": float64(i%100) + 0.5, "sent_ns": now.UnixNano()})
		raw, _ := json.Marshal(events.Event{SpecVersion: events.SpecVersion, ID: fmt.Sprint("m", i), Source: "loadtest",
			Type: events.TypeName(events.DomainMedia, events.MediaDownloadProgress), Time: now.UTC(), DataContentType: "application/json", Data: data})
		if _, err := js.PublishAsync("medianest.events.media.download.progress", raw); err != nil {
			return res, err
		}
	}
	<-js.PublishAsyncComplete()
	// Wait until the consumer has handled everything.
	cons, err := js.Consumer(ctx, "MEDIANEST_MEDIA", "media-worker")
	for err != nil && time.Since(start) < time.Minute {
		time.Sleep(100 * time.Millisecond)
		cons, err = js.Consumer(ctx, "MEDIANEST_MEDIA", "media-worker")
	}
	if err != nil {
		return res, err
	}
	for {
		info, err := cons.Info(ctx)
		if err == nil && info.AckFloor.Stream >= uint64(o.Events) && info.NumAckPending == 0 {
			break
		}
		if time.Since(start) > 5*time.Minute {
			return res, fmt.Errorf("events not all handled after five minutes")
		}
		time.Sleep(10 * time.Millisecond)
	}
	res.Seconds = time.Since(start).Seconds()
	res.EventsPerSec = float64(o.Events) / res.Seconds
	time.Sleep(200 * time.Millisecond)
	res.Delivered = delivered.Load()
	mu.Lock()
	res.Latency = Summarise(lat)
	mu.Unlock()
	return res, nil
}
