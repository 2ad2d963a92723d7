package e2e

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

type connectErr struct {
	Code          string   `json:"code"`
	RequiredRoles []string `json:"required_roles"`
}

func TestTokenSources(t *testing.T) {
	h := startHub(t, nil, nil)
	d := newDriver(t)
	tok := mint(t, "u1", "user")
	tests := []struct {
		name string
		o    ConnOpts
	}{
		{"auth payload", ConnOpts{Token: tok}},
		{"auth payload with Bearer prefix", ConnOpts{Token: "Bearer " + tok}},
		{"authorization header", ConnOpts{Headers: map[string]string{"Authorization": "Bearer " + tok}}},
		{"cookie", ConnOpts{Headers: map[string]string{"Cookie": "theme=dark; auth-token=" + tok}}},
		{"query parameter", ConnOpts{Query: map[string]string{"token": tok}}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := "c" + string(rune('a'+i))
			d.MustConnect(id, h.URL, "/authenticated", tt.o)
			w := d.Expect(id, "event", "welcome")
			var welcome struct {
				Message string `json:"message"`
				User    struct {
					ID, Email, Name, Role string
				} `json:"user"`
				ServerTime string `json:"serverTime"`
			}
			w.Arg(t, 0, &welcome)
			if welcome.User.ID != "u1" || welcome.User.Role != "user" || welcome.User.Email != "u1@example.test" || welcome.Message == "" {
				t.Fatalf("welcome = %+v", welcome)
			}
			if _, err := time.Parse(time.RFC3339, welcome.ServerTime); err != nil {
				t.Fatalf("serverTime %q: %v", welcome.ServerTime, err)
			}
			d.Disconnect(id)
		})
	}

	t.Run("first present source wins", func(t *testing.T) {
		// An invalid token in the auth payload is not rescued by a valid header.
		d.Connect("first", h.URL, "/authenticated", ConnOpts{Token: "garbage", Headers: map[string]string{"Authorization": "Bearer " + tok}})
		m := d.Expect("first", "connect_error", "")
		var ce connectErr
		_ = json.Unmarshal(m.Data, &ce)
		if m.Message != "Authentication failed" || ce.Code != "token_invalid" {
			t.Fatalf("got %q %s", m.Message, m.Data)
		}
	})
}

func TestConnectRefusals(t *testing.T) {
	h := startHub(t, nil, nil)
	d := newDriver(t)
	other := strings.Repeat("x", 40)
	_ = other
	tests := []struct {
		name, ns, message, code string
		o                       ConnOpts
	}{
		{"missing token", "/authenticated", "Authentication failed", "token_missing", ConnOpts{}},
		{"garbage token", "/media", "Authentication failed", "token_invalid", ConnOpts{Token: "not.a.token"}},
		{"wrong issuer", "/media", "Authentication failed", "token_invalid", ConnOpts{Token: mint(t, "u1", "user", withIssuer("evil"))}},
		{"expired token", "/media", "Authentication failed", "token_expired", ConnOpts{Token: mint(t, "u1", "user", withTTL(-time.Hour))}},
		{"user on admin", "/admin", "Required role: admin", "insufficient_role", ConnOpts{Token: mint(t, "u1", "user")}},
		{"user on system", "/system", "Required role: admin or ops or service", "insufficient_role", ConnOpts{Token: mint(t, "u1", "user")}},
		{"ops on media", "/media", "Required role: user or admin", "insufficient_role", ConnOpts{Token: mint(t, "o1", "ops")}},
		{"unknown namespace", "/nope", "Invalid namespace", "", ConnOpts{Token: mint(t, "u1", "admin")}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := "r" + string(rune('a'+i))
			d.Connect(id, h.URL, tt.ns, tt.o)
			m := d.ExpectAny(id, "connect", "connect_error")
			if m.Type != "connect_error" || m.Message != tt.message {
				t.Fatalf("got %s %q %s, want connect_error %q", m.Type, m.Message, m.Data, tt.message)
			}
			var ce connectErr
			if tt.code != "" {
				if err := json.Unmarshal(m.Data, &ce); err != nil || ce.Code != tt.code {
					t.Fatalf("data = %s, want code %q", m.Data, tt.code)
				}
			} else if string(m.Data) != "null" && len(m.Data) != 0 {
				t.Fatalf("data = %s, want none", m.Data)
			}
		})
	}

	t.Run("roles case-insensitive and admitted", func(t *testing.T) {
		d.MustConnect("adm", h.URL, "/admin", ConnOpts{Token: mint(t, "a1", "ADMIN")})
		d.MustConnect("ops", h.URL, "/system", ConnOpts{Token: mint(t, "o1", "ops")})
		d.MustConnect("svc", h.URL, "/system", ConnOpts{Token: mint(t, "s1", "Service")})
	})

	t.Run("root ignores an invalid token", func(t *testing.T) {
		d.MustConnect("anon", h.URL, "/", ConnOpts{Token: "garbage"})
		d.Emit("anon", "user-info")
		m := d.Expect("anon", "event", "error")
		var e struct{ Message string }
		m.Arg(t, 0, &e)
		if e.Message != "User not authenticated" {
			t.Fatalf("error = %+v", e)
		}
	})

	t.Run("the node still serves after refusals", func(t *testing.T) {
		d.MustConnect("after", h.URL, "/media", ConnOpts{Token: mint(t, "u2", "user")})
	})
}

func TestEIO3AndPollingRefused(t *testing.T) {
	h := startHub(t, nil, nil)
	tests := []struct {
		name, query string
		code        int
	}{
		{"EIO=3", "EIO=3&transport=websocket", 5},
		{"no EIO", "transport=websocket", 5},
		{"polling", "EIO=4&transport=polling", 0},
		{"upgrade from a polling session", "EIO=4&transport=websocket&sid=abc", 1},
		{"not a websocket request", "EIO=4&transport=websocket", 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := http.Get(h.URL + "/socket.io/?" + tt.query)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var body struct {
				Code    int
				Message string
			}
			_ = json.NewDecoder(resp.Body).Decode(&body)
			if resp.StatusCode != http.StatusBadRequest || body.Code != tt.code || body.Message == "" {
				t.Fatalf("status %d body %+v, want 400 code %d", resp.StatusCode, body, tt.code)
			}
			if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
				t.Fatalf("security headers missing: %v", resp.Header)
			}
		})
	}
}
