package e2e

import (
	"encoding/json"
	"testing"
)

type errPayload struct {
	Message string `json:"message"`
	Code    string `json:"code"`
}

func TestBuiltinEvents(t *testing.T) {
	h := startHub(t, nil, nil)
	d := newDriver(t)
	d.MustConnect("m", h.URL, "/media", ConnOpts{Token: mint(t, "u1", "user")})
	d.Expect("m", "event", "welcome")

	t.Run("ping returns pong with the data and serverTime", func(t *testing.T) {
		d.Emit("m", "ping", map[string]any{"n": 7})
		var pong map[string]any
		d.Expect("m", "event", "pong").Arg(t, 0, &pong)
		if pong["n"] != float64(7) || pong["serverTime"] == nil {
			t.Fatalf("pong = %v", pong)
		}
		ack := d.EmitAck("m", "ping", map[string]any{"n": 8})
		ack.Arg(t, 0, &pong)
		if pong["n"] != float64(8) {
			t.Fatalf("ack = %v", pong)
		}
		d.Expect("m", "event", "pong")
	})

	t.Run("echo returns the arguments", func(t *testing.T) {
		d.Emit("m", "echo", "a", 2, map[string]any{"b": true})
		m := d.Expect("m", "event", "echo")
		if len(m.Args) != 3 || string(m.Args[0]) != `"a"` || string(m.Args[1]) != "2" || string(m.Args[2]) != `{"b":true}` {
			t.Fatalf("echo args = %s", m.Args)
		}
		ack := d.EmitAck("m", "echo", "x")
		if len(ack.Args) != 1 || string(ack.Args[0]) != `"x"` {
			t.Fatalf("echo ack = %s", ack.Args)
		}
		d.Expect("m", "event", "echo")
	})

	t.Run("user-info", func(t *testing.T) {
		d.Emit("m", "user-info")
		var u struct{ ID, Role, Email string }
		d.Expect("m", "event", "user-info").Arg(t, 0, &u)
		if u.ID != "u1" || u.Role != "user" {
			t.Fatalf("user-info = %+v", u)
		}
	})

	bad := []struct {
		name, event string
		args        []any
		message     string
	}{
		{"join without payload", "join-media-room", nil, "Invalid room ID"},
		{"join with null", "join-media-room", []any{nil}, "Invalid room ID"},
		{"join with a number", "join-media-room", []any{42}, "Invalid room ID"},
		{"join with an array", "join-media-room", []any{[]int{1}}, "Invalid room ID"},
		{"join with a bad id", "join-media-room", []any{map[string]any{"roomId": "../etc"}}, "Invalid room ID"},
		{"join with a long id", "join-media-room", []any{map[string]any{"roomId": string(make([]byte, 200))}}, "Invalid room ID"},
		{"join with a wildcard id", "join-media-room", []any{map[string]any{"roomId": "a.>"}}, "Invalid room ID"},
		{"leave with a number id", "leave-media-room", []any{map[string]any{"roomId": 5}}, "Invalid room ID"},
		{"status with a string", "media-status", []any{"playing"}, "media-status needs an object payload"},
		{"status without a room", "media-status", []any{map[string]any{"state": "playing"}}, "Join a media room first"},
		{"status to a room not joined", "media-status", []any{map[string]any{"roomId": "r9"}}, "Not a member of room r9"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			d.Emit("m", tt.event, tt.args...)
			var e errPayload
			d.Expect("m", "event", "error").Arg(t, 0, &e)
			if e.Message != tt.message || e.Code == "" {
				t.Fatalf("error = %+v, want %q", e, tt.message)
			}
		})
	}

	t.Run("join and leave a media room", func(t *testing.T) {
		d.Emit("m", "join-media-room", map[string]any{"roomId": "movie-1"})
		var j map[string]string
		d.Expect("m", "event", "joined-room").Arg(t, 0, &j)
		if j["roomId"] != "movie-1" {
			t.Fatalf("joined-room = %v", j)
		}
		ack := d.EmitAck("m", "leave-media-room", map[string]any{"roomId": "movie-1"})
		ack.Arg(t, 0, &j)
		d.Expect("m", "event", "left-room")
		if j["roomId"] != "movie-1" {
			t.Fatalf("left-room ack = %v", j)
		}
	})

	t.Run("the socket still works after bad input", func(t *testing.T) {
		ack := d.EmitAck("m", "ping")
		var pong map[string]any
		ack.Arg(t, 0, &pong)
		if pong["serverTime"] == nil {
			t.Fatalf("pong = %v", pong)
		}
	})
}

func TestSystemNamespace(t *testing.T) {
	h := startHub(t, nil, nil)
	d := newDriver(t)
	d.MustConnect("sys", h.URL, "/system", ConnOpts{Token: mint(t, "ops1", "ops")})
	ack := d.EmitAck("sys", "system-health")
	var health struct {
		Node        string
		Uptime      float64
		Connections int
		Memory      map[string]uint64
		Timestamp   string
		NATS        bool `json:"nats"`
	}
	ack.Arg(t, 0, &health)
	if health.Node == "" || health.Connections < 1 || health.Memory["heapAlloc"] == 0 || health.Timestamp == "" || !health.NATS {
		t.Fatalf("system-health = %+v", health)
	}
	d.Expect("sys", "event", "system-health")

	// Alerts published on NATS reach /system sockets live.
	if err := h.App.NATS().Publish("medianest.alerts.critical.brute_force", []byte(`{"type":"medianest.alert.brute_force.v1","data":{"rule":"brute_force"}}`)); err != nil {
		t.Fatal(err)
	}
	var alert struct {
		Type string
		Data map[string]string
	}
	d.Expect("sys", "event", "alert").Arg(t, 0, &alert)
	if alert.Data["rule"] != "brute_force" {
		t.Fatalf("alert = %+v", alert)
	}

	// Log lines reach sockets that subscribe to them.
	sub := d.EmitAck("sys", "subscribe-logs")
	var ok map[string]any
	sub.Arg(t, 0, &ok)
	if ok["ok"] != true {
		t.Fatalf("subscribe-logs ack = %v", ok)
	}
	// A malformed emit makes the node log a warning, which the feed carries.
	if err := h.App.NATS().Publish("medianest.hub.emit.media._all", []byte(`not json`)); err != nil {
		t.Fatal(err)
	}
	var line map[string]any
	d.Expect("sys", "event", "log").Arg(t, 0, &line)
	if line["level"] != "warn" || line["message"] == nil {
		t.Fatalf("log line = %v", line)
	}
	for _, v := range line {
		if s, ok := v.(string); ok && len(s) > 100 {
			t.Fatalf("log line carries a long value (a token?): %v", line)
		}
	}
	_ = json.RawMessage{}
}
