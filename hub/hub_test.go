package hub

import (
	"encoding/json"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
)

func TestClientIP(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("127.0.0.1/32")}
	tests := []struct {
		name, remote string
		xff          []string
		trusted      []netip.Prefix
		want         string
	}{
		{"peer without proxies", "203.0.113.5:4000", []string{"1.2.3.4"}, nil, "203.0.113.5"},
		{"untrusted peer's header ignored", "203.0.113.5:4000", []string{"1.2.3.4"}, trusted, "203.0.113.5"},
		{"trusted peer, one hop", "10.1.2.3:4000", []string{"198.51.100.7"}, trusted, "198.51.100.7"},
		{"right-most untrusted wins", "10.1.2.3:4000", []string{"6.6.6.6, 198.51.100.7, 10.9.9.9"}, trusted, "198.51.100.7"},
		{"several headers", "127.0.0.1:1", []string{"6.6.6.6", "198.51.100.8"}, trusted, "198.51.100.8"},
		{"garbage header falls back to peer", "10.1.2.3:4000", []string{"nonsense"}, trusted, "10.1.2.3"},
		{"all trusted", "10.1.2.3:4000", []string{"10.0.0.1"}, trusted, "10.0.0.1"},
		{"ipv4-mapped peer", "[::ffff:203.0.113.9]:80", nil, nil, "203.0.113.9"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			r.RemoteAddr = tt.remote
			for _, v := range tt.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			if got := clientIP(r, tt.trusted); got != tt.want {
				t.Fatalf("clientIP = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestOriginChecker(t *testing.T) {
	tests := []struct {
		name    string
		list    []string
		host    string
		origin  string
		allowed bool
	}{
		{"no origin", nil, "hub.example", "", true},
		{"same origin", nil, "hub.example:8080", "https://hub.example:8080", true},
		{"other origin, empty list", nil, "hub.example", "https://evil.example", false},
		{"listed", []string{"https://app.example/"}, "hub.example", "https://APP.example", true},
		{"not listed", []string{"https://app.example"}, "hub.example", "https://evil.example", false},
		{"wildcard", []string{"*"}, "hub.example", "https://any.example", true},
		{"null origin", nil, "hub.example", "null", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			r.Host = tt.host
			if tt.origin != "" {
				r.Header.Set("Origin", tt.origin)
			}
			if got := newOriginChecker(tt.list).allow(r); got != tt.allowed {
				t.Fatalf("allow = %v, want %v", got, tt.allowed)
			}
		})
	}
}

func TestTokenFromAuth(t *testing.T) {
	tests := []struct{ name, raw, want string }{
		{"none", ``, ""},
		{"empty object", `{}`, ""},
		{"token", `{"token":"abc"}`, "abc"},
		{"bearer prefix", `{"token":"Bearer abc"}`, "abc"},
		{"not a string", `{"token":5}`, "\x00invalid"},
		{"null token is missing", `{"token":null}`, ""},
		{"object token", `{"token":{"a":1}}`, "\x00invalid"},
		{"auth not an object", `"abc"`, ""},
		{"other fields of another type", `{"user":5,"token":"abc"}`, "abc"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tokenFromAuth(json.RawMessage(tt.raw)); got != tt.want {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestAckArgs(t *testing.T) {
	tests := []struct {
		name, in string
		want     []string
	}{
		{"array is the argument list", `[1,"a"]`, []string{"1", `"a"`}},
		{"object is one argument", `{"ok":true}`, []string{`{"ok":true}`}},
		{"scalar", `42`, []string{"42"}},
		{"not json becomes a string", `plain text`, []string{`"plain text"`}},
		{"empty", ``, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ackArgs([]byte(tt.in))
			if len(got) != len(tt.want) {
				t.Fatalf("got %s, want %v", got, tt.want)
			}
			for i := range got {
				if string(got[i]) != tt.want[i] {
					t.Fatalf("arg %d = %s, want %s", i, got[i], tt.want[i])
				}
			}
		})
	}
}

func TestPolicies(t *testing.T) {
	byNS := map[string]Policy{}
	for _, p := range DefaultPolicies() {
		byNS[p.Namespace] = p
	}
	tests := []struct {
		ns       string
		anon     bool
		message  string
		features []Feature
	}{
		{"/", true, "Required role: ", []Feature{FeatureBase}},
		{"/authenticated", false, "Required role: user or admin", []Feature{FeatureBase, FeatureWelcome}},
		{"/media", false, "Required role: user or admin", []Feature{FeatureMedia}},
		{"/admin", false, "Required role: admin", []Feature{FeatureAdmin, FeatureMedia}},
		{"/system", false, "Required role: admin or ops or service", []Feature{FeatureSystem}},
	}
	for _, tt := range tests {
		t.Run(tt.ns, func(t *testing.T) {
			p, ok := byNS[tt.ns]
			if !ok {
				t.Fatal("missing")
			}
			if p.Anonymous() != tt.anon || p.RequiredRoleMessage() != tt.message {
				t.Fatalf("policy %+v: anon %v msg %q", p, p.Anonymous(), p.RequiredRoleMessage())
			}
			for _, f := range tt.features {
				if !p.Has(f) {
					t.Fatalf("%s lacks %s", tt.ns, f)
				}
			}
		})
	}
	if byNS["/media"].Has(FeatureAdmin) || byNS["/"].Has(FeatureWelcome) {
		t.Fatal("a namespace serves features above its row")
	}
}

func TestMediaRoomIDPattern(t *testing.T) {
	for _, ok := range []string{"a", "Movie_1-2", strings.Repeat("x", 128)} {
		if !mediaRoomID.MatchString(ok) {
			t.Errorf("%q refused", ok)
		}
	}
	for _, bad := range []string{"", "a.b", "a b", "a*", ">", strings.Repeat("x", 129), "é"} {
		if mediaRoomID.MatchString(bad) {
			t.Errorf("%q accepted", bad)
		}
	}
}
