package hub

import "strings"

// Feature names a set of built-in events a namespace serves.
type Feature string

// Built-in feature sets of DESIGN §4.
const (
	// FeatureBase: ping→pong, echo, user-info.
	FeatureBase Feature = "base"
	// FeatureWelcome: a welcome event on connect.
	FeatureWelcome Feature = "welcome"
	// FeatureMedia: join-media-room, leave-media-room, media-status relay.
	FeatureMedia Feature = "media"
	// FeatureAdmin: admin:users:connected, admin:user:disconnect.
	FeatureAdmin Feature = "admin"
	// FeatureSystem: system-health, logs and the security alert feed.
	FeatureSystem Feature = "system"
)

// Policy says who may connect to a namespace and what it serves.
type Policy struct {
	// Namespace is the Socket.io namespace, like "/media".
	Namespace string `json:"namespace"`
	// Roles admits tokens holding any of them (compared in lower case).
	// Empty admits anyone: a valid token attaches its user, an invalid or
	// missing one is ignored.
	Roles []string `json:"roles"`
	// Features are the built-in event sets the namespace serves.
	Features []Feature `json:"features"`
}

// Anonymous reports whether the namespace admits clients without a token.
func (p Policy) Anonymous() bool { return len(p.Roles) == 0 }

// Has reports whether the namespace serves a feature.
func (p Policy) Has(f Feature) bool {
	for _, x := range p.Features {
		if x == f {
			return true
		}
	}
	return false
}

// RequiredRoleMessage is the connect_error message for a token without
// any of the namespace's roles: "Required role: admin", or
// "Required role: user or admin".
func (p Policy) RequiredRoleMessage() string {
	return "Required role: " + strings.Join(p.Roles, " or ")
}

// DefaultPolicies is DESIGN §4's table. Each namespace serves the events of
// the rows above it, plus its own.
func DefaultPolicies() []Policy {
	return []Policy{
		{Namespace: "/", Features: []Feature{FeatureBase}},
		{Namespace: "/authenticated", Roles: []string{"user", "admin"}, Features: []Feature{FeatureBase, FeatureWelcome}},
		{Namespace: "/media", Roles: []string{"user", "admin"}, Features: []Feature{FeatureBase, FeatureWelcome, FeatureMedia}},
		{Namespace: "/admin", Roles: []string{"admin"}, Features: []Feature{FeatureBase, FeatureWelcome, FeatureMedia, FeatureAdmin}},
		{Namespace: "/system", Roles: []string{"admin", "ops", "service"}, Features: []Feature{FeatureBase, FeatureWelcome, FeatureMedia, FeatureAdmin, FeatureSystem}},
	}
}
