package events

import "time"

// Security event names (type medianest.security.<name>.v1).
const (
	SecAuthenticated  = "authenticated"
	SecAuthFailed     = "auth_failed"
	SecAccessDenied   = "access_denied"
	SecRateLimited    = "rate_limited"
	SecOriginRejected = "origin_rejected"
	SecBadInput       = "bad_input"
	SecSessionRevoked = "session_revoked"
)

// SecurityData is the union of the security events' data fields; each
// event type uses the fields its schema lists.
type SecurityData struct {
	IP            string   `json:"ip,omitempty"`
	Namespace     string   `json:"namespace,omitempty"`
	UserID        string   `json:"user_id,omitempty"`
	SessionID     string   `json:"session_id,omitempty"`
	JTI           string   `json:"jti,omitempty"`
	Code          string   `json:"code,omitempty"`
	RequiredRoles []string `json:"required_roles,omitempty"`
	Limit         string   `json:"limit,omitempty"`
	Origin        string   `json:"origin,omitempty"`
	Reason        string   `json:"reason,omitempty"`
	SocketsClosed *int     `json:"sockets_closed,omitempty"`
}

// Alert severities.
const (
	SeverityInfo     = "info"
	SeverityWarning  = "warning"
	SeverityCritical = "critical"
)

// AlertData is the data of an alert (type medianest.alert.<rule>.v1,
// subject medianest.alerts.<severity>.<rule>).
type AlertData struct {
	Rule      string    `json:"rule"`
	Severity  string    `json:"severity"`
	Summary   string    `json:"summary"`
	Subject   string    `json:"subject"`
	Count     int       `json:"count"`
	FirstSeen time.Time `json:"first_seen"`
	LastSeen  time.Time `json:"last_seen"`
	EventIDs  []string  `json:"event_ids"`
	// Action says what enforcement followed, if any ("ip_blocked",
	// "session_revoked").
	Action string `json:"action,omitempty"`
}

// AlertType is the CloudEvents type of an alert of a rule.
func AlertType(rule string) string { return "medianest.alert." + rule + ".v1" }

// Control operations that block and unblock client IPs on every node.
const (
	CtlBlock   = "block"
	CtlUnblock = "unblock"
)

// BlockMessage blocks (or, for unblock, lifts the block of) an IP.
type BlockMessage struct {
	IP      string    `json:"ip"`
	Until   time.Time `json:"until,omitempty"`
	Reason  string    `json:"reason,omitempty"`
	AlertID string    `json:"alert_id,omitempty"`
}
