package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/medianest/hub/events"
	"github.com/medianest/hub/internal/config"
	"github.com/medianest/hub/schema"
)

// behindProxy makes the hub believe X-Forwarded-For from 127.0.0.1, so a
// test can speak from many client IPs.
func behindProxy(blockFor time.Duration) func(*config.Config) {
	return func(c *config.Config) {
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
		c.SecurityBlockIPs = true
		c.SecurityBlockFor = blockFor
	}
}

func from(ip string) map[string]string { return map[string]string{"X-Forwarded-For": ip} }

// alertsOf collects alerts published on NATS.
func alertsOf(t *testing.T, nc *nats.Conn) chan events.Event {
	t.Helper()
	ch := make(chan events.Event, 64)
	sub, err := nc.Subscribe("medianest.alerts.>", func(m *nats.Msg) {
		var ev events.Event
		if json.Unmarshal(m.Data, &ev) == nil {
			ch <- ev
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sub.Unsubscribe() })
	return ch
}

func TestBruteForceBlocksIP(t *testing.T) {
	c := newCluster(t, 2, behindProxy(3*time.Second))
	alerts := alertsOf(t, c.nc)
	d := newDriver(t)
	attacker, other := "203.0.113.50", "198.51.100.9"

	failures := 0
	for i := range 12 {
		id := fmt.Sprint("bf", i)
		d.Connect(id, c.nodes[i%2].URL, "/media", ConnOpts{Token: fmt.Sprintf("forged.token.%d", i), Headers: from(attacker)})
		m := d.Expect(id, "connect_error", "")
		if m.Message == "Authentication failed" {
			failures++
		}
	}

	var alert events.AlertData
	select {
	case ev := <-alerts:
		if ev.Type != "medianest.alert.brute_force.v1" {
			t.Fatalf("alert type %q", ev.Type)
		}
		_ = json.Unmarshal(ev.Data, &alert)
		if alert.Subject != "ip:"+attacker || alert.Count < 10 || alert.Action != "ip_blocked" || len(alert.EventIDs) < 10 || alert.Severity == "" {
			t.Fatalf("alert = %+v", alert)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no brute_force alert")
	}
	// The alert keeps counting what followed: one alert, every failure.
	waitFor(t, 10*time.Second, func() error {
		code, body := c.api(0, "GET", "/api/v1/alerts?rule=brute_force&ip="+attacker, nil)
		items, _ := body["items"].([]any)
		if code != 200 || len(items) != 1 {
			return fmt.Errorf("alerts API: %d %v", code, body)
		}
		if n := items[0].(map[string]any)["count"].(float64); int(n) != failures {
			return fmt.Errorf("alert count %v, want %d", n, failures)
		}
		return nil
	})
	select {
	case ev := <-alerts:
		t.Fatalf("a second alert: %s %s", ev.Type, ev.Data)
	case <-time.After(200 * time.Millisecond):
	}

	// The attacker is refused on every node, with a valid token too.
	good := c.login("u1", "s-bf")
	for n, node := range c.nodes {
		id := fmt.Sprint("blocked", n)
		d.Connect(id, node.URL, "/media", ConnOpts{Token: good, Headers: from(attacker)})
		m := d.ExpectAny(id, "connect", "connect_error")
		var ce connectErr
		_ = json.Unmarshal(m.Data, &ce)
		if m.Type != "connect_error" || m.Message != "Access denied" || ce.Code != "ip_blocked" {
			t.Fatalf("node %d: attacker got %s %q %s", n, m.Type, m.Message, m.Data)
		}
	}
	// Another IP is not.
	d.MustConnect("other", c.nodes[1].URL, "/media", ConnOpts{Token: good, Headers: from(other)})
	// The audit log holds every failure, newest first, in pages.
	seen := map[string]bool{}
	cursor := ""
	for page := 0; page < 10; page++ {
		path := "/api/v1/audit?type=security.auth_failed&ip=" + attacker + "&limit=5"
		if cursor != "" {
			path += "&before=" + url.QueryEscape(cursor)
		}
		code, body := c.api(0, "GET", path, nil)
		items, _ := body["items"].([]any)
		if code != 200 {
			t.Fatalf("audit API: %d %v", code, body)
		}
		for _, it := range items {
			rec := it.(map[string]any)
			if rec["ip"] != attacker || rec["code"] != "token_invalid" || seen[rec["id"].(string)] {
				t.Fatalf("audit record %v", rec)
			}
			seen[rec["id"].(string)] = true
		}
		next, _ := body["next_before"].(string)
		if next == "" {
			break
		}
		cursor = next
	}
	if len(seen) != failures {
		t.Fatalf("audit log paged through %d failures, want %d", len(seen), failures)
	}
	for _, bad := range []string{"/api/v1/audit?since=yesterday", "/api/v1/alerts?limit=0", "/api/v1/alerts?before=soon"} {
		if code, body := c.api(0, "GET", bad, nil); code != http.StatusBadRequest || body["code"] != "invalid_query" {
			t.Fatalf("%s: %d %v", bad, code, body)
		}
	}

	code, body := c.api(1, "GET", "/api/v1/blocks", nil)
	if items, _ := body["items"].([]any); code != 200 || len(items) != 1 || items[0].(map[string]any)["ip"] != attacker {
		t.Fatalf("blocks API: %d %v", code, body)
	}

	// The block expires.
	waitFor(t, 10*time.Second, func() error {
		id := fmt.Sprint("later", time.Now().UnixNano())
		d.Connect(id, c.nodes[0].URL, "/media", ConnOpts{Token: good, Headers: from(attacker)})
		if m := d.ExpectAny(id, "connect", "connect_error"); m.Type != "connect" {
			return fmt.Errorf("still refused: %s", m.Message)
		}
		return nil
	})
}

func TestAdminLiftsBlock(t *testing.T) {
	c := newCluster(t, 1, behindProxy(time.Hour))
	d := newDriver(t)
	for i := range 10 {
		id := fmt.Sprint("f", i)
		d.Connect(id, c.nodes[0].URL, "/media", ConnOpts{Headers: from("192.0.2.7")})
		d.Expect(id, "connect_error", "")
	}
	good := c.login("u1", "s-lift")
	waitFor(t, 10*time.Second, func() error {
		id := fmt.Sprint("probe", time.Now().UnixNano())
		d.Connect(id, c.nodes[0].URL, "/media", ConnOpts{Token: good, Headers: from("192.0.2.7")})
		if m := d.ExpectAny(id, "connect", "connect_error"); m.Message != "Access denied" {
			return fmt.Errorf("not blocked yet: %s %s", m.Type, m.Message)
		}
		return nil
	})
	if code, body := c.api(0, "DELETE", "/api/v1/blocks/192.0.2.7", nil); code != 200 {
		t.Fatalf("lift: %d %v", code, body)
	}
	waitFor(t, 5*time.Second, func() error {
		id := fmt.Sprint("after", time.Now().UnixNano())
		d.Connect(id, c.nodes[0].URL, "/media", ConnOpts{Token: good, Headers: from("192.0.2.7")})
		if m := d.ExpectAny(id, "connect", "connect_error"); m.Type != "connect" {
			return fmt.Errorf("still refused: %s", m.Message)
		}
		return nil
	})
	if code, _ := c.api(0, "DELETE", "/api/v1/blocks/192.0.2.7", nil); code != http.StatusNotFound {
		t.Fatalf("lifting again: %d", code)
	}
}

func TestTokenReplayRevokesSession(t *testing.T) {
	c := newCluster(t, 2, behindProxy(time.Minute))
	alerts := alertsOf(t, c.nc)
	d := newDriver(t)
	tok := c.login("victim", "s-replayed")
	for i, ip := range []string{"10.1.0.1", "10.2.0.2", "10.3.0.3"} {
		d.MustConnect(fmt.Sprint("r", i), c.nodes[i%2].URL, "/media", ConnOpts{Token: tok, Headers: from(ip)})
	}
	for i := range 3 {
		expectKicked(t, d, fmt.Sprint("r", i), "session_revoked")
	}
	select {
	case ev := <-alerts:
		var a events.AlertData
		_ = json.Unmarshal(ev.Data, &a)
		if a.Rule != "token_replay" || a.Subject != "session:s-replayed" || a.Count != 3 || a.Action != "session_revoked" {
			t.Fatalf("alert = %+v", a)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no token_replay alert")
	}
	expectRefused(t, d, "again", c.nodes[0].URL, "/media", tok, "session_revoked")
}

// TestHubSecurityEventsValidate makes the hub emit every kind of security
// event and checks each one on the stream against its JSON Schema.
func TestHubSecurityEventsValidate(t *testing.T) {
	c := newCluster(t, 1, func(cfg *config.Config) {
		behindProxy(time.Minute)(cfg)
		cfg.AllowedOrigins = []string{"https://app.example.com"}
		cfg.RateEventsPerMin = 3
		cfg.RateConnectPerMin = 4
		cfg.MaxPayload = 4096
		cfg.Components = []string{config.ComponentHub} // leave the events on the stream
	})
	h := c.nodes[0]
	d := newDriver(t)
	tok := c.login("u1", "s-ev")
	d.MustConnect("ok", h.URL, "/media", ConnOpts{Token: tok, Headers: from("10.9.0.1")})  // authenticated
	d.Connect("bad", h.URL, "/media", ConnOpts{Token: "x.y.z", Headers: from("10.9.0.2")}) // auth_failed
	d.Expect("bad", "connect_error", "")
	d.Connect("deny", h.URL, "/admin", ConnOpts{Token: tok, Headers: from("10.9.0.3")}) // access_denied
	d.Expect("deny", "connect_error", "")
	d.Connect("origin", h.URL, "/", ConnOpts{Headers: map[string]string{"Origin": "https://evil.example", "X-Forwarded-For": "10.9.0.4"}}) // origin_rejected
	d.Expect("origin", "connect_error", "")
	for i := range 5 { // rate_limited (connect)
		id := fmt.Sprint("flood", i)
		d.Connect(id, h.URL, "/", ConnOpts{Headers: from("10.9.0.5")})
		d.ExpectAny(id, "connect", "connect_error")
	}
	d.Emit("ok", "join-media-room", map[string]string{"roomId": "bad id!"}) // bad_input
	d.Expect("ok", "event", "error")
	for range 4 { // rate_limited (events)
		d.Emit("ok", "ping")
	}
	d.Expect("ok", "event", "error")

	want := []string{"authenticated", "auth_failed", "access_denied", "origin_rejected", "rate_limited", "bad_input"}
	v, err := schema.NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	cons, err := c.js.OrderedConsumer(context.Background(), "MEDIANEST_SECURITY", jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	limits := map[string]bool{}
	waitFor(t, 10*time.Second, func() error {
		batch, err := cons.FetchNoWait(100)
		if err != nil {
			return err
		}
		for m := range batch.Messages() {
			typ, err := v.Validate(m.Data())
			if err != nil {
				t.Fatalf("the hub emitted an invalid event: %v\n%s", err, m.Data())
			}
			name := strings.TrimSuffix(strings.TrimPrefix(typ, "medianest.security."), ".v1")
			seen[name]++
			var ev events.Event
			var data events.SecurityData
			_ = json.Unmarshal(m.Data(), &ev)
			_ = json.Unmarshal(ev.Data, &data)
			if name == "rate_limited" {
				limits[data.Limit] = true
			}
			if data.IP == "" || data.IP == "127.0.0.1" {
				t.Fatalf("event without the client IP: %s", m.Data())
			}
		}
		for _, w := range want {
			if seen[w] == 0 {
				return fmt.Errorf("no %s event yet (seen %v)", w, seen)
			}
		}
		if !limits["connect"] || !limits["events"] {
			return fmt.Errorf("rate_limited limits seen: %v", limits)
		}
		return nil
	})
}
