package e2e

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/medianest/hub/events"
	"github.com/medianest/hub/internal/testkit"
)

// publishMedia stores a media event on the media stream as a backend does.
func (c *cluster) publishMedia(name string, data any) {
	c.t.Helper()
	testkit.Publish(c.t, c.js, events.DomainMedia, name, data)
}

func TestMediaRouting(t *testing.T) {
	c := newCluster(t, 2, nil)
	d := newDriver(t)
	a, b := c.nodes[0].URL, c.nodes[1].URL
	tokA := c.login("42", "s42a")
	tokB := c.login("42", "s42b")
	tokOther := c.login("7", "s7")
	d.MustConnect("u42a", a, "/", ConnOpts{Token: tokA})
	d.MustConnect("u42b", b, "/", ConnOpts{Token: tokB})
	d.MustConnect("u7", b, "/", ConnOpts{Token: tokOther})
	d.MustConnect("anon", a, "/", ConnOpts{})
	d.MustConnect("media42", a, "/media", ConnOpts{Token: tokA}) // another namespace: nothing by default
	d.Expect("media42", "event", "welcome")

	// u7 follows service status; on the other node from the worker's choice.
	ack := d.EmitAck("u7", "subscribe:status")
	var cur struct{ Services []map[string]any }
	ack.Arg(t, 0, &cur)
	d.Expect("u7", "event", "status:current")

	everyone := []string{"u42a", "u42b", "u7", "anon", "media42"}
	rows := []struct {
		name  string
		data  any
		event string
		to    []string
	}{
		{events.MediaDownloadProgress, map[string]any{"user_id": "42", "download_id": "d1", "progress": 12.5, "speed_bps": 1000}, "download:progress", []string{"u42a", "u42b"}},
		{events.MediaDownloadCompleted, map[string]any{"user_id": "42", "download_id": "d1"}, "download:completed", []string{"u42a", "u42b"}},
		{events.MediaDownloadFailed, map[string]any{"user_id": "7", "download_id": "d2", "error": "disk full"}, "download:failed", []string{"u7"}},
		{events.MediaDownloadCancelled, map[string]any{"user_id": "42", "download_id": "d3"}, "download:cancelled", []string{"u42a", "u42b"}},
		{events.MediaRequestStatus, map[string]any{"request_id": "r1", "user_id": "7", "status": "approved", "title": "Dune"}, "request:status", []string{"u7"}},
		{events.MediaServiceStatus, map[string]any{"service_id": "plex", "status": "down"}, "service:status", []string{"u7"}},
		{events.MediaNotification, map[string]any{"user_id": "42", "notification": map[string]any{"id": "n1", "title": "Hi", "message": "m", "level": "info"}}, "notification:new", []string{"u42a", "u42b"}},
		{events.MediaNotification, map[string]any{"notification": map[string]any{"id": "n2", "title": "Maintenance", "message": "m", "level": "warning"}}, "notification:system", []string{"u42a", "u42b", "u7", "anon"}},
		{events.MediaItemAvailable, map[string]any{"media_id": "m1", "title": "Dune", "media_type": "movie"}, "media:available", []string{"u42a", "u42b", "u7", "anon"}},
	}
	for _, row := range rows {
		t.Run(row.event, func(t *testing.T) {
			c.publishMedia(row.name, row.data)
			want, _ := json.Marshal(row.data)
			for _, id := range row.to {
				m := d.Expect(id, "event", row.event)
				var got, exp map[string]any
				m.Arg(t, 0, &got)
				_ = json.Unmarshal(want, &exp)
				if fmt.Sprint(got) != fmt.Sprint(exp) {
					t.Fatalf("%s got %v, want %v", id, got, exp)
				}
			}
			for _, id := range everyone {
				d.ExpectNone(id, "event", row.event, 150*time.Millisecond)
			}
		})
	}

	t.Run("request rooms are for the request's own user", func(t *testing.T) {
		ack := d.EmitAck("u42a", "subscribe:request", map[string]string{"requestId": "r1"})
		var e errPayload
		ack.Arg(t, 0, &e)
		if e.Code != "forbidden" {
			t.Fatalf("another user's request: %s", ack.Args)
		}
		d.Expect("u42a", "event", "error")
		ack = d.EmitAck("u7", "subscribe:request", map[string]string{"requestId": "nope"})
		ack.Arg(t, 0, &e)
		if e.Code != "not_found" {
			t.Fatalf("unknown request: %s", ack.Args)
		}
		d.Expect("u7", "event", "error")
		ack = d.EmitAck("u7", "subscribe:request", map[string]string{"requestId": "r1"})
		var ok map[string]string
		ack.Arg(t, 0, &ok)
		if ok["room"] != "request:r1" {
			t.Fatalf("own request: %s", ack.Args)
		}
		d.Expect("u7", "event", "request:subscribed")
		c.publishMedia(events.MediaRequestStatus, map[string]any{"request_id": "r1", "user_id": "7", "status": "available"})
		d.Expect("u7", "event", "request:status")
		m := d.Expect("u7", "event", "request:r1:status")
		var st map[string]string
		m.Arg(t, 0, &st)
		if st["status"] != "available" {
			t.Fatalf("request room got %v", st)
		}
		d.ExpectNone("u42a", "event", "request:r1:status", 150*time.Millisecond)
	})

	t.Run("status:current after three services reported", func(t *testing.T) {
		for _, svc := range []string{"sonarr", "radarr"} {
			c.publishMedia(events.MediaServiceStatus, map[string]any{"service_id": svc, "status": "up", "response_time_ms": 12})
			d.Expect("u7", "event", "service:status")
		}
		ack := d.EmitAck("u42b", "subscribe:status")
		var cur struct{ Services []map[string]any }
		ack.Arg(t, 0, &cur)
		got := map[string]string{}
		for _, s := range cur.Services {
			got[s["service_id"].(string)] = s["status"].(string)
		}
		if len(got) != 3 || got["plex"] != "down" || got["sonarr"] != "up" || got["radarr"] != "up" {
			t.Fatalf("status:current = %v", cur.Services)
		}
	})
}

func TestProgressCoalescing(t *testing.T) {
	c := newCluster(t, 1, nil)
	d := newDriver(t)
	d.MustConnect("u", c.nodes[0].URL, "/", ConnOpts{Token: c.login("42", "s42")})
	start := time.Now()
	for i := 1; i <= 1000; i++ {
		c.publishMedia(events.MediaDownloadProgress, map[string]any{"user_id": "42", "download_id": "big", "progress": float64(i) / 10})
		if pause := time.Until(start.Add(time.Duration(i) * time.Millisecond)); pause > 0 {
			time.Sleep(pause)
		}
	}
	c.publishMedia(events.MediaDownloadCompleted, map[string]any{"user_id": "42", "download_id": "big"})
	elapsed := time.Since(start)

	m := d.Expect("u", "event", "download:completed")
	_ = m
	var updates []float64
	d.mu.Lock()
	completedAt := -1
	for i, msg := range d.msgs {
		if msg.ID != "u" || msg.Type != "event" {
			continue
		}
		switch msg.Event {
		case "download:progress":
			var p struct{ Progress float64 }
			_ = json.Unmarshal(msg.Args[0], &p)
			updates = append(updates, p.Progress)
			if completedAt >= 0 {
				t.Errorf("progress after completed")
			}
		case "download:completed":
			completedAt = i
		}
	}
	d.mu.Unlock()
	// 4 a second, plus the first one at once and the flush before completed.
	limit := int(elapsed.Seconds()*4) + 2
	if len(updates) == 0 || len(updates) > limit {
		t.Fatalf("%d progress updates in %s (limit %d): %v", len(updates), elapsed.Round(time.Millisecond), limit, updates)
	}
	if last := updates[len(updates)-1]; last != 100 {
		t.Fatalf("last update %v, want the final value 100 (updates %v)", last, updates)
	}
	for i := 1; i < len(updates); i++ {
		if updates[i] <= updates[i-1] {
			t.Fatalf("updates out of order: %v", updates)
		}
	}
}
