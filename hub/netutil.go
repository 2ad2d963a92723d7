package hub

import (
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
)

// clientIP returns the client's address: the TCP peer, or, when the peer
// is a trusted proxy, the right-most X-Forwarded-For entry that is not one.
func clientIP(r *http.Request, trusted []netip.Prefix) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	peer, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	peer = peer.Unmap()
	if len(trusted) == 0 || !isTrusted(peer, trusted) {
		return peer.String()
	}
	xff := r.Header.Values("X-Forwarded-For")
	for i := len(xff) - 1; i >= 0; i-- {
		parts := strings.Split(xff[i], ",")
		for j := len(parts) - 1; j >= 0; j-- {
			a, err := netip.ParseAddr(strings.TrimSpace(parts[j]))
			if err != nil {
				return peer.String() // a forged or broken header: believe the peer
			}
			a = a.Unmap()
			if !isTrusted(a, trusted) {
				return a.String()
			}
			peer = a
		}
	}
	return peer.String()
}

func isTrusted(a netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// originChecker decides whether a browser Origin may connect.
type originChecker struct {
	any     bool
	allowed map[string]bool
}

func newOriginChecker(list []string) originChecker {
	oc := originChecker{allowed: make(map[string]bool, len(list))}
	for _, o := range list {
		if o == "*" {
			oc.any = true
			continue
		}
		oc.allowed[normalizeOrigin(o)] = true
	}
	return oc
}

func normalizeOrigin(o string) string {
	return strings.ToLower(strings.TrimSuffix(strings.TrimSpace(o), "/"))
}

// allow admits requests without an Origin (non-browser clients), the same
// origin as the request's Host, and the configured list.
func (oc originChecker) allow(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" || oc.any {
		return true
	}
	if oc.allowed[normalizeOrigin(origin)] {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil {
		return false
	}
	return strings.EqualFold(u.Host, r.Host)
}

// tokenSources holds the connection-level places a token may come from.
type tokenSources struct {
	bearer, cookie, query string
}

func readTokenSources(r *http.Request) tokenSources {
	var ts tokenSources
	if h := r.Header.Get("Authorization"); len(h) > 7 && strings.EqualFold(h[:7], "Bearer ") {
		ts.bearer = strings.TrimSpace(h[7:])
	}
	if c, err := r.Cookie("auth-token"); err == nil {
		ts.cookie = c.Value
	}
	ts.query = r.URL.Query().Get("token")
	return ts
}
