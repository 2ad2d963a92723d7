package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/medianest/hub/events"
	"github.com/medianest/hub/internal/bus"
	"github.com/medianest/hub/internal/testkit"
)

func TestEventsTail(t *testing.T) {
	ns := testkit.Server(t)
	_, js := testkit.Connect(t, ns)
	if err := bus.EnsureStreams(context.Background(), js, bus.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, ip := range []string{"1.1.1.1", "2.2.2.2"} {
		ev, _ := events.New("test", events.DomainSecurity, events.SecAuthFailed, "ip:"+ip, events.SecurityData{IP: ip, Namespace: "/media", Code: "token_invalid"})
		raw, _ := json.Marshal(ev)
		if _, err := js.Publish(context.Background(), "medianest.events.security.auth_failed", raw); err != nil {
			t.Fatal(err)
		}
	}
	lookup := env("MEDIANEST_NATS_URL", ns.ClientURL())

	out, err := run(t, lookup, "events", "tail", "security", "--since", "1h", "--no-follow")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], "security.auth_failed") || !strings.Contains(lines[0], "ip=1.1.1.1") || !strings.Contains(lines[1], "code=token_invalid") {
		t.Fatalf("readable output:\n%s", out)
	}

	out, err = run(t, lookup, "events", "tail", "security", "--since", "1h", "--no-follow", "--json")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var ev events.Event
		if err := json.Unmarshal([]byte(line), &ev); err != nil || ev.Type != "medianest.security.auth_failed.v1" {
			t.Fatalf("json line %q: %v", line, err)
		}
	}

	for _, bad := range [][]string{
		{"events", "tail", "weather"},
		{"events", "tail", "security", "--since", "yesterday"},
	} {
		if _, err := run(t, lookup, bad...); err == nil {
			t.Fatalf("%v: no error", bad)
		}
	}
	if _, err := run(t, env(), "events", "tail", "security"); err == nil || !strings.Contains(err.Error(), "MEDIANEST_NATS_URL") {
		t.Fatalf("without a NATS URL: %v", err)
	}
}
