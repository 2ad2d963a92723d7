package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/medianest/hub/events"
	"github.com/medianest/hub/internal/config"
	"github.com/medianest/hub/internal/testkit"
)

// cluster is several strict-mode hub nodes on one NATS and one database,
// as in production.
type cluster struct {
	t     *testing.T
	ns    *server.Server
	db    string
	nodes []*hubNode
	js    jetstream.JetStream
	nc    *nats.Conn
	tune  func(*config.Config)
}

func newCluster(t *testing.T, size int, tune func(*config.Config)) *cluster {
	t.Helper()
	return newClusterOn(t, size, "sqlite:"+filepath.Join(t.TempDir(), "shared.db"), tune)
}

// newClusterOn is newCluster on a given database URL.
func newClusterOn(t *testing.T, size int, db string, tune func(*config.Config)) *cluster {
	t.Helper()
	c := &cluster{t: t, ns: startNATS(t), db: db, tune: tune}
	for range size {
		c.addNode()
	}
	c.nc = natsConn(t, c.ns)
	js, err := jetstream.New(c.nc)
	if err != nil {
		t.Fatal(err)
	}
	c.js = js
	return c
}

func (c *cluster) addNode() *hubNode {
	c.t.Helper()
	h := startHub(c.t, c.ns, func(cfg *config.Config) {
		cfg.SessionMode = config.SessionStrict
		cfg.DatabaseURL = c.db
		if c.tune != nil {
			c.tune(cfg)
		}
	})
	c.nodes = append(c.nodes, h)
	return h
}

// publish stores a session event on the session stream.
func (c *cluster) publish(name string, data any) {
	c.t.Helper()
	testkit.Publish(c.t, c.js, events.DomainSession, name, data)
}

// login announces a session the way a backend does and returns a token
// for it.
func (c *cluster) login(user, sid string, opts ...tokenOpt) string {
	c.t.Helper()
	tok := mint(c.t, user, "user", append([]tokenOpt{withSession(sid)}, opts...)...)
	sum := sha256.Sum256([]byte(tok))
	c.publish(events.SessionCreated, events.SessionCreatedData{
		SessionID: sid, UserID: user, ExpiresAt: time.Now().Add(time.Hour), TokenSHA256: hex.EncodeToString(sum[:]),
	})
	return tok
}

// api calls a node's admin API with an admin service token.
func (c *cluster) api(node int, method, path string, body any) (int, map[string]any) {
	c.t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(method, c.nodes[node].URL+path, bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+mint(c.t, "ops-bot", "service"))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func expectKicked(t *testing.T, d *Driver, id, code string) {
	t.Helper()
	var why struct{ Reason, Code string }
	d.Expect(id, "event", "server:disconnect").Arg(t, 0, &why)
	if why.Code != code || why.Reason == "" {
		t.Fatalf("%s: server:disconnect %+v, want code %q", id, why, code)
	}
	if m := d.Expect(id, "disconnect", ""); m.Reason != "io server disconnect" {
		t.Fatalf("%s: disconnect reason %q", id, m.Reason)
	}
}

func expectRefused(t *testing.T, d *Driver, id, url, ns, token, code string) {
	t.Helper()
	d.Connect(id, url, ns, ConnOpts{Token: token})
	m := d.ExpectAny(id, "connect", "connect_error")
	var ce connectErr
	_ = json.Unmarshal(m.Data, &ce)
	if m.Type != "connect_error" || m.Message != "Authentication failed" || ce.Code != code {
		t.Fatalf("%s: %s %q %s, want connect_error code %q", id, m.Type, m.Message, m.Data, code)
	}
}

func TestStrictSessions(t *testing.T) {
	c := newCluster(t, 1, nil)
	d := newDriver(t)
	h := c.nodes[0]

	expectRefused(t, d, "unknown", h.URL, "/media", mint(t, "u1", "user", withSession("never-created")), "session_invalid")
	expectRefused(t, d, "no-sid", h.URL, "/media", mint(t, "u1", "user"), "session_invalid")

	tok := c.login("u1", "s-live")
	d.MustConnect("ok", h.URL, "/media", ConnOpts{Token: tok})

	// A token without sid is matched to its session by its SHA-256.
	plain := mint(t, "u2", "user")
	sum := sha256.Sum256([]byte(plain))
	c.publish(events.SessionCreated, events.SessionCreatedData{SessionID: "s-by-hash", UserID: "u2", ExpiresAt: time.Now().Add(time.Hour), TokenSHA256: hex.EncodeToString(sum[:])})
	d.MustConnect("hash", h.URL, "/media", ConnOpts{Token: plain})

	// Another user's token on a known session is refused.
	expectRefused(t, d, "thief", h.URL, "/media", mint(t, "u9", "user", withSession("s-live")), "session_invalid")

	// Logout closes the live socket and refuses the token from then on.
	code, body := c.api(0, "DELETE", "/api/v1/sessions/s-live", nil)
	if code != http.StatusAccepted {
		t.Fatalf("end session: %d %v", code, body)
	}
	expectKicked(t, d, "ok", "session_invalid")
	expectRefused(t, d, "again", h.URL, "/media", tok, "session_invalid")
	d.ExpectNone("hash", "disconnect", "", 100*time.Millisecond)
}

func TestRevocationAcrossNodes(t *testing.T) {
	c := newCluster(t, 3, nil)
	d := newDriver(t)
	sec := make(chan *nats.Msg, 64)
	sub, err := c.nc.ChanSubscribe("medianest.events.security.session_revoked", sec)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()

	type victim struct {
		user, sid, jti string
		token          string
	}
	tests := []struct {
		name   string
		via    string // "event" or "api"
		target func(v victim) events.SessionRevokedData
	}{
		{"session via event", "event", func(v victim) events.SessionRevokedData {
			return events.SessionRevokedData{SessionID: v.sid, Reason: "stolen device"}
		}},
		{"session via api", "api", func(v victim) events.SessionRevokedData {
			return events.SessionRevokedData{SessionID: v.sid, Reason: "stolen device"}
		}},
		{"user via event", "event", func(v victim) events.SessionRevokedData {
			return events.SessionRevokedData{UserID: v.user, Reason: "account disabled"}
		}},
		{"user via api", "api", func(v victim) events.SessionRevokedData {
			return events.SessionRevokedData{UserID: v.user, Reason: "account disabled"}
		}},
		{"jti via event", "event", func(v victim) events.SessionRevokedData {
			return events.SessionRevokedData{JTI: v.jti, Reason: "token leaked"}
		}},
		{"jti via api", "api", func(v victim) events.SessionRevokedData {
			return events.SessionRevokedData{JTI: v.jti, Reason: "token leaked"}
		}},
	}
	var refusedLater []victim
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := victim{user: fmt.Sprint("victim", i), sid: fmt.Sprint("sv", i), jti: fmt.Sprint("jti", i)}
			v.token = c.login(v.user, v.sid, withJTI(v.jti))
			bystander := c.login(fmt.Sprint("bystander", i), fmt.Sprint("sb", i))
			// The victim's other session survives a session or jti revocation.
			other := c.login(v.user, fmt.Sprint("sv-other", i))
			for n, node := range c.nodes {
				d.MustConnect(fmt.Sprint(i, "v", n), node.URL, "/media", ConnOpts{Token: v.token})
				d.MustConnect(fmt.Sprint(i, "b", n), node.URL, "/", ConnOpts{Token: bystander})
			}
			d.MustConnect(fmt.Sprint(i, "o"), c.nodes[1].URL, "/media", ConnOpts{Token: other})

			data := tt.target(v)
			if tt.via == "event" {
				c.publish(events.SessionRevoked, data)
			} else {
				code, body := c.api(i%3, "POST", "/api/v1/revocations", data)
				if code != http.StatusAccepted || body["id"] == nil {
					t.Fatalf("revocation API: %d %v", code, body)
				}
			}
			for n := range c.nodes {
				expectKicked(t, d, fmt.Sprint(i, "v", n), "session_revoked")
			}
			if data.UserID != "" {
				expectKicked(t, d, fmt.Sprint(i, "o"), "session_revoked")
			} else {
				d.ExpectNone(fmt.Sprint(i, "o"), "disconnect", "", 0)
			}
			for n := range c.nodes {
				d.ExpectNone(fmt.Sprint(i, "b", n), "disconnect", "", 0)
			}
			expectRefused(t, d, fmt.Sprint(i, "retry"), c.nodes[(i+1)%3].URL, "/media", v.token, "session_revoked")

			// The worker records what was closed.
			deadline := time.After(10 * time.Second)
			for {
				select {
				case m := <-sec:
					var ev events.Event
					var got events.SecuritySessionRevokedData
					_ = json.Unmarshal(m.Data, &ev)
					_ = json.Unmarshal(ev.Data, &got)
					if got.SessionID != data.SessionID || got.UserID != data.UserID || got.JTI != data.JTI {
						continue
					}
					want := 3
					if data.UserID != "" {
						want = 4
					}
					if got.SocketsClosed != want || got.Reason != data.Reason {
						t.Fatalf("security.session_revoked = %+v, want %d sockets", got, want)
					}
				case <-deadline:
					t.Fatal("no security.session_revoked event")
				}
				break
			}
			refusedLater = append(refusedLater, v)
		})
	}

	t.Run("a node started afterwards refuses them", func(t *testing.T) {
		late := c.addNode()
		for i, v := range refusedLater {
			expectRefused(t, d, fmt.Sprint("late", i), late.URL, "/media", v.token, "session_revoked")
		}
		fresh := c.login("newcomer", "s-new")
		d.MustConnect("late-ok", late.URL, "/media", ConnOpts{Token: fresh})
	})

	t.Run("bad revocation requests", func(t *testing.T) {
		for _, body := range []any{
			map[string]string{"reason": "x"},
			map[string]string{"session_id": "a", "user_id": "b", "reason": "x"},
			map[string]string{"session_id": "a"},
			map[string]any{"session_id": 5, "reason": "x"},
			map[string]string{"session_id": "a", "reason": "x", "extra": "y"},
		} {
			if code, out := c.api(0, "POST", "/api/v1/revocations", body); code != http.StatusBadRequest || out["code"] != "invalid_body" {
				t.Fatalf("%v: %d %v", body, code, out)
			}
		}
	})
}

func TestTokenRefresh(t *testing.T) {
	c := newCluster(t, 1, func(cfg *config.Config) {
		cfg.ExpiryWarning = 2 * time.Second
		cfg.ExpiryGrace = time.Second
	})
	d := newDriver(t)
	h := c.nodes[0]
	short := c.login("u1", "s1", withTTL(3*time.Second))
	d.MustConnect("keep", h.URL, "/media", ConnOpts{Token: short})
	lapse := c.login("u2", "s2", withTTL(3*time.Second))
	d.MustConnect("lapse", h.URL, "/media", ConnOpts{Token: lapse})
	d.MustConnect("thief", h.URL, "/media", ConnOpts{Token: c.login("u3", "s3", withTTL(3*time.Second))})

	var warn struct {
		ExpiresAt string `json:"expires_at"`
	}
	d.Expect("keep", "event", "auth:expiring").Arg(t, 0, &warn)
	if _, err := time.Parse(time.RFC3339, warn.ExpiresAt); err != nil {
		t.Fatalf("expires_at %q", warn.ExpiresAt)
	}

	// Another user's token is refused, and the socket keeps its own.
	ack := d.EmitAck("thief", "auth:refresh", map[string]string{"token": mint(t, "u1", "user", withSession("s1"))})
	var res struct {
		OK        bool
		Code      string
		ExpiresAt string `json:"expires_at"`
	}
	ack.Arg(t, 0, &res)
	if res.OK || res.Code != "token_invalid" {
		t.Fatalf("refresh with another user's token: %+v", res)
	}

	// A valid refresh keeps the socket past the first token's exp.
	ack = d.EmitAck("keep", "auth:refresh", map[string]string{"token": mint(t, "u1", "user", withSession("s1"), withTTL(time.Hour))})
	ack.Arg(t, 0, &res)
	if !res.OK || res.ExpiresAt == "" {
		t.Fatalf("refresh: %+v", res)
	}

	expectKicked(t, d, "lapse", "token_expired")
	expectKicked(t, d, "thief", "token_expired")
	d.ExpectNone("keep", "disconnect", "", 500*time.Millisecond)
	if ack := d.EmitAck("keep", "ping"); ack.Err != nil {
		t.Fatalf("refreshed socket: %s", *ack.Err)
	}
}
