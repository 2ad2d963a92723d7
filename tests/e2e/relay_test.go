package e2e

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/medianest/hub/events"
	"github.com/medianest/hub/internal/config"
)

func twoNodes(t *testing.T) (*hubNode, *hubNode, *nats.Conn) {
	t.Helper()
	ns := startNATS(t)
	fast := func(c *config.Config) { c.AckTimeout = 2 * time.Second }
	a, b := startHub(t, ns, fast), startHub(t, ns, fast)
	// Both nodes know each other before cluster-wide operations run.
	waitFor(t, 5*time.Second, func() error {
		if c := a.App.Node().ClusterCount(t.Context()); c.Nodes != 2 {
			return fmt.Errorf("node a sees %d nodes, want 2", c.Nodes)
		}
		return nil
	})
	return a, b, natsConn(t, ns)
}

func TestMediaStatusAcrossNodes(t *testing.T) {
	a, b, _ := twoNodes(t)
	d := newDriver(t)
	for _, c := range []struct{ id, url, user string }{
		{"a1", a.URL, "u1"}, {"a2", a.URL, "u2"}, {"b1", b.URL, "u3"}, {"b2", b.URL, "u4"},
	} {
		d.MustConnect(c.id, c.url, "/media", ConnOpts{Token: mint(t, c.user, "user")})
	}
	for _, id := range []string{"a1", "a2", "b1"} {
		d.Emit(id, "join-media-room", map[string]string{"roomId": "film-9"})
		d.Expect(id, "event", "joined-room")
	}
	ack := d.EmitAck("a1", "media-status", map[string]any{"state": "playing", "position": 12.5})
	var res map[string]any
	ack.Arg(t, 0, &res)
	if res["ok"] != true {
		t.Fatalf("media-status ack = %v", res)
	}
	for _, id := range []string{"a2", "b1"} {
		var st struct {
			State     string
			Position  float64
			UserID    string `json:"userId"`
			Timestamp string
		}
		d.Expect(id, "event", "media-status").Arg(t, 0, &st)
		if st.State != "playing" || st.Position != 12.5 || st.UserID != "u1" || st.Timestamp == "" {
			t.Fatalf("%s got %+v", id, st)
		}
	}
	d.ExpectNone("a1", "event", "media-status", 300*time.Millisecond) // not the sender
	d.ExpectNone("b2", "event", "media-status", 0)                    // not a member
	d.ExpectNone("a2", "event", "media-status", 0)                    // exactly once
	d.ExpectNone("b1", "event", "media-status", 0)
}

func TestEmitFromBackends(t *testing.T) {
	a, b, nc := twoNodes(t)
	d := newDriver(t)
	d.MustConnect("ua", a.URL, "/", ConnOpts{Token: mint(t, "42", "user")})
	d.MustConnect("ub", b.URL, "/", ConnOpts{Token: mint(t, "42", "user")})
	d.MustConnect("other", b.URL, "/", ConnOpts{Token: mint(t, "7", "user")})
	d.MustConnect("media", a.URL, "/media", ConnOpts{Token: mint(t, "42", "user")})
	d.Expect("media", "event", "welcome")

	publish := func(subject string, v any) {
		t.Helper()
		b, _ := json.Marshal(v)
		if err := nc.Publish(subject, b); err != nil {
			t.Fatal(err)
		}
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("to a user on both nodes", func(t *testing.T) {
		publish("medianest.hub.emit._root.user:42", map[string]any{"event": "download:progress", "data": map[string]any{"progress": 40}})
		for _, id := range []string{"ua", "ub"} {
			var p map[string]float64
			d.Expect(id, "event", "download:progress").Arg(t, 0, &p)
			if p["progress"] != 40 {
				t.Fatalf("%s got %v", id, p)
			}
		}
		d.ExpectNone("other", "event", "download:progress", 200*time.Millisecond)
		d.ExpectNone("media", "event", "download:progress", 0) // another namespace
	})

	t.Run("to the whole namespace with args", func(t *testing.T) {
		publish("medianest.hub.emit._root._all", map[string]any{"event": "notification:system", "args": []any{"a", 2}})
		for _, id := range []string{"ua", "ub", "other"} {
			m := d.Expect(id, "event", "notification:system")
			if len(m.Args) != 2 || string(m.Args[0]) != `"a"` || string(m.Args[1]) != "2" {
				t.Fatalf("%s args = %s", id, m.Args)
			}
		}
	})

	t.Run("to a role room of another namespace", func(t *testing.T) {
		publish("medianest.hub.emit.media.role:user", map[string]any{"event": "library:updated", "data": 1})
		d.Expect("media", "event", "library:updated")
		d.ExpectNone("ua", "event", "library:updated", 200*time.Millisecond)
	})

	t.Run("bad emits are ignored and the node keeps serving", func(t *testing.T) {
		for _, bad := range []string{`not json`, `{"data":1}`, `{"event":"x","args":{"no":"array"}}`} {
			if err := nc.Publish("medianest.hub.emit._root._all", []byte(bad)); err != nil {
				t.Fatal(err)
			}
		}
		publish("medianest.hub.emit.nope._all", map[string]any{"event": "x"})
		publish("medianest.hub.emit._root.user:42", map[string]any{"event": "after-bad"})
		d.Expect("ua", "event", "after-bad")
		d.ExpectNone("ua", "event", "x", 100*time.Millisecond)
	})
}

func TestRequestsToBackends(t *testing.T) {
	a, b, nc := twoNodes(t)
	d := newDriver(t)
	d.MustConnect("ca", a.URL, "/media", ConnOpts{Token: mint(t, "u1", "user", withSession("s-1"))})
	d.MustConnect("cb", b.URL, "/media", ConnOpts{Token: mint(t, "u2", "user")})

	// A backend answering download:start requests.
	sub, err := nc.Subscribe("medianest.hub.recv.media.download:start", func(m *nats.Msg) {
		var env events.RecvEnvelope
		if err := json.Unmarshal(m.Data, &env); err != nil {
			_ = m.Respond([]byte(`{"error":"bad envelope"}`))
			return
		}
		reply, _ := json.Marshal([]any{map[string]any{"accepted": true, "user": env.User, "arg": env.Args[0]}, "second"})
		_ = m.Respond(reply)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	_ = nc.Flush()

	t.Run("ack round trip from both nodes", func(t *testing.T) {
		for _, id := range []string{"ca", "cb"} {
			ack := d.EmitAck(id, "download:start", map[string]string{"mediaId": "m1"})
			if ack.Err != nil {
				t.Fatalf("%s ack error %s", id, *ack.Err)
			}
			var r struct {
				Accepted bool
				User     string
				Arg      map[string]string
			}
			ack.Arg(t, 0, &r)
			var second string
			ack.Arg(t, 1, &second)
			if !r.Accepted || r.Arg["mediaId"] != "m1" || second != "second" {
				t.Fatalf("%s ack = %s", id, ack.Args)
			}
		}
	})

	t.Run("no responder gives unavailable", func(t *testing.T) {
		ack := d.EmitAck("cb", "library:scan", "now")
		var r map[string]string
		ack.Arg(t, 0, &r)
		if r["error"] != "unavailable" {
			t.Fatalf("ack = %s", ack.Args)
		}
	})

	t.Run("an event without ack is published with its envelope", func(t *testing.T) {
		got := make(chan *nats.Msg, 1)
		s, err := nc.ChanSubscribe("medianest.hub.recv.media.>", got)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Unsubscribe()
		_ = nc.Flush()
		d.Emit("ca", "watch.progress*", 1, "two")
		select {
		case m := <-got:
			if m.Subject != "medianest.hub.recv.media.watch%2Eprogress%2A" {
				t.Fatalf("subject = %q", m.Subject)
			}
			var env events.RecvEnvelope
			if err := json.Unmarshal(m.Data, &env); err != nil {
				t.Fatal(err)
			}
			if env.ID == "" || env.NS != "/media" || env.Event != "watch.progress*" || env.Socket == "" ||
				env.User == nil || *env.User != "u1" || env.Session == nil || *env.Session != "s-1" ||
				len(env.Roles) != 1 || env.Node == "" || env.Time.IsZero() || len(env.Args) != 2 {
				t.Fatalf("envelope = %+v", env)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no message on hub.recv")
		}
	})
}

func TestAdminAcrossNodes(t *testing.T) {
	a, b, _ := twoNodes(t)
	d := newDriver(t)
	d.MustConnect("admin", a.URL, "/admin", ConnOpts{Token: mint(t, "root", "admin")})
	d.MustConnect("v1", a.URL, "/media", ConnOpts{Token: mint(t, "victim", "user")})
	d.MustConnect("v2", b.URL, "/", ConnOpts{Token: mint(t, "victim", "user")})
	d.MustConnect("bystander", b.URL, "/media", ConnOpts{Token: mint(t, "other", "user")})

	ack := d.EmitAck("admin", "admin:users:connected")
	var count struct {
		Count, Sockets, Users, Nodes int
	}
	ack.Arg(t, 0, &count)
	if count.Nodes != 2 || count.Sockets != 4 || count.Users != 3 || count.Count != 3 {
		t.Fatalf("count = %+v", count)
	}

	t.Run("bad payload", func(t *testing.T) {
		ack := d.EmitAck("admin", "admin:user:disconnect", map[string]int{"userId": 5})
		var e errPayload
		ack.Arg(t, 0, &e)
		if e.Code != "invalid_payload" {
			t.Fatalf("ack = %s", ack.Args)
		}
		d.Expect("admin", "event", "error")
	})

	ack = d.EmitAck("admin", "admin:user:disconnect", "victim")
	var res struct {
		OK           bool
		Disconnected int
		Nodes        int
	}
	ack.Arg(t, 0, &res)
	if !res.OK || res.Disconnected != 2 || res.Nodes != 2 {
		t.Fatalf("disconnect = %+v", res)
	}
	for _, id := range []string{"v1", "v2"} {
		if m := d.Expect(id, "disconnect", ""); m.Reason != "io server disconnect" {
			t.Fatalf("%s disconnect reason %q", id, m.Reason)
		}
	}
	d.ExpectNone("bystander", "disconnect", "", 200*time.Millisecond)

	// The action is audited durably.
	log, err := a.App.Store().AuditLog(t.Context(), 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(log) == 0 || log[0].Action != "user.disconnect" || log[0].Target != "victim" || log[0].Actor != "root" {
		t.Fatalf("audit log = %+v", log)
	}
}

func TestControlJoinLeaveAndCount(t *testing.T) {
	a, b, nc := twoNodes(t)
	d := newDriver(t)
	d.MustConnect("ua", a.URL, "/media", ConnOpts{Token: mint(t, "42", "user")})
	d.MustConnect("ub", b.URL, "/media", ConnOpts{Token: mint(t, "42", "user")})
	d.MustConnect("other", b.URL, "/media", ConnOpts{Token: mint(t, "7", "user")})
	for _, id := range []string{"ua", "ub", "other"} {
		d.Expect(id, "event", "welcome")
	}

	gather := func(op string, msg events.CtlMessage) int {
		t.Helper()
		body, _ := json.Marshal(msg)
		inbox := nc.NewRespInbox()
		ch := make(chan *nats.Msg, 4)
		sub, _ := nc.ChanSubscribe(inbox, ch)
		defer sub.Unsubscribe()
		if err := nc.PublishRequest("medianest.hub.ctl."+op, inbox, body); err != nil {
			t.Fatal(err)
		}
		total := 0
		for range 2 {
			select {
			case m := <-ch:
				var r events.CtlReply
				_ = json.Unmarshal(m.Data, &r)
				if r.Error != "" {
					t.Fatalf("%s: %s", op, r.Error)
				}
				total += r.Count
			case <-time.After(5 * time.Second):
				t.Fatalf("%s: a node did not answer", op)
			}
		}
		return total
	}

	if n := gather(events.CtlJoin, events.CtlMessage{UserID: "42", NS: "/media", Room: "vip"}); n != 2 {
		t.Fatalf("join matched %d sockets, want 2", n)
	}
	publish := func(event string) {
		body, _ := json.Marshal(map[string]any{"event": event, "data": 1})
		if err := nc.Publish("medianest.hub.emit.media.vip", body); err != nil {
			t.Fatal(err)
		}
	}
	publish("vip:news")
	d.Expect("ua", "event", "vip:news")
	d.Expect("ub", "event", "vip:news")
	d.ExpectNone("other", "event", "vip:news", 200*time.Millisecond)

	if n := gather(events.CtlLeave, events.CtlMessage{UserID: "42", NS: "/media", Room: "vip"}); n != 2 {
		t.Fatalf("leave matched %d sockets, want 2", n)
	}
	publish("vip:late")
	d.ExpectNone("ua", "event", "vip:late", 200*time.Millisecond)
	d.ExpectNone("ub", "event", "vip:late", 0)

	if n := gather(events.CtlCount, events.CtlMessage{NS: "/media"}); n != 3 {
		t.Fatalf("count = %d, want 3", n)
	}
	// A control message without a selector is refused, not applied to everyone.
	body, _ := json.Marshal(events.CtlMessage{Room: "vip"})
	reply, err := nc.Request("medianest.hub.ctl.disconnect", body, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var r events.CtlReply
	_ = json.Unmarshal(reply.Data, &r)
	if r.Error == "" || r.Count != 0 {
		t.Fatalf("disconnect without a selector: %+v", r)
	}
	d.ExpectNone("other", "disconnect", "", 200*time.Millisecond)
}
