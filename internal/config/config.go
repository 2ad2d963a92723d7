// Package config loads and validates MediaNest Hub's configuration from
// MEDIANEST_* environment variables. Defaults live here and nowhere else;
// every error names the variable and the rule it broke.
package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Session modes.
const (
	SessionStateless = "stateless"
	SessionStrict    = "strict"
)

// Config is the whole configuration of a medianest-hub process.
type Config struct {
	ListenAddr        string         // MEDIANEST_LISTEN_ADDR, default ":8080"
	JWTSecret         string         // MEDIANEST_JWT_SECRET, required, >= 32 bytes
	JWTSecretPrevious string         // MEDIANEST_JWT_SECRET_PREVIOUS, optional, >= 32 bytes
	JWTIssuer         string         // MEDIANEST_JWT_ISSUER, default "medianest"
	JWTAudience       string         // MEDIANEST_JWT_AUDIENCE, default "medianest-users"
	AllowedOrigins    []string       // MEDIANEST_ALLOWED_ORIGINS, empty = same origin and no Origin only
	NATSURL           string         // MEDIANEST_NATS_URL, empty = embedded server
	NATSListen        string         // MEDIANEST_NATS_LISTEN, embedded server's TCP address; empty = in-process only
	DataDir           string         // MEDIANEST_DATA_DIR, default "./data"
	DatabaseURL       string         // MEDIANEST_DATABASE_URL, empty = SQLite in the data dir
	SubjectPrefix     string         // MEDIANEST_SUBJECT_PREFIX, default "medianest"
	SessionMode       string         // MEDIANEST_SESSION_MODE, default "stateless"
	LogLevel          string         // MEDIANEST_LOG_LEVEL, default "info"
	LogFormat         string         // MEDIANEST_LOG_FORMAT, "json" (default) or "console"
	TrustedProxies    []netip.Prefix // MEDIANEST_TRUSTED_PROXIES, CIDR list; empty = none
	RateConnectPerMin int            // MEDIANEST_RATE_CONNECT_PER_MINUTE, default 10
	RateEventsPerMin  int            // MEDIANEST_RATE_EVENTS_PER_MINUTE, default 100
	PingInterval      time.Duration  // MEDIANEST_PING_INTERVAL, default 25s
	PingTimeout       time.Duration  // MEDIANEST_PING_TIMEOUT, default 20s
	MaxPayload        int64          // MEDIANEST_MAX_PAYLOAD, bytes, default 1000000
	SendQueue         int            // MEDIANEST_SEND_QUEUE, frames per connection, default 128
	WriteDelay        time.Duration  // MEDIANEST_WRITE_DELAY, how long frames gather after a busy write round, default 20ms, 0 off
	AckTimeout        time.Duration  // MEDIANEST_ACK_TIMEOUT, backend reply wait, default 5s
	ShutdownTimeout   time.Duration  // MEDIANEST_SHUTDOWN_TIMEOUT, default 10s
	NodeID            string         // MEDIANEST_NODE_ID, default random
	TokenMaxLifetime  time.Duration  // MEDIANEST_TOKEN_MAX_LIFETIME, how long a revocation matters, default 24h
	ExpiryWarning     time.Duration  // MEDIANEST_EXPIRY_WARNING, auth:expiring lead time, default 60s
	ExpiryGrace       time.Duration  // MEDIANEST_EXPIRY_GRACE, disconnect delay after exp, default 5s
	EventsMaxAge      time.Duration  // MEDIANEST_EVENTS_MAX_AGE, JetStream retention, default 168h
	CleanupInterval   time.Duration  // MEDIANEST_CLEANUP_INTERVAL, default 10m
	Components        []string       // MEDIANEST_COMPONENTS, default hub,session-worker,security-worker

	SecurityBlockIPs     bool                 // MEDIANEST_SECURITY_BLOCK_IPS, default true
	SecurityBlockFor     time.Duration        // MEDIANEST_SECURITY_BLOCK_FOR, default 15m
	SecurityRevokeReplay bool                 // MEDIANEST_SECURITY_REVOKE_REPLAY, default true
	AlertWebhookURL      string               // MEDIANEST_ALERT_WEBHOOK_URL, empty = none
	AlertWebhookSecret   string               // MEDIANEST_ALERT_WEBHOOK_SECRET, HMAC key, optional
	Detections           map[string]Threshold // MEDIANEST_DETECT_<RULE>, "count/window"
	PprofAddr            string               // MEDIANEST_PPROF_ADDR, serve net/http/pprof here (keep it on loopback); empty = off
	MediaRoutesFile      string               // MEDIANEST_MEDIA_ROUTES, JSON routing table; empty = the default
	MediaProgressRate    float64              // MEDIANEST_MEDIA_PROGRESS_RATE, progress updates per download per second, default 4; 0 = no coalescing
}

// Threshold is a detection's count within a sliding window.
type Threshold struct {
	Count  int
	Window time.Duration
}

// DetectionRules are the rules whose thresholds MEDIANEST_DETECT_<RULE>
// sets, with their defaults.
func DetectionRules() map[string]Threshold {
	return map[string]Threshold{
		"brute_force":         {10, time.Minute},
		"credential_stuffing": {5, 10 * time.Minute},
		"token_replay":        {3, 5 * time.Minute},
		"privilege_probing":   {5, 5 * time.Minute},
		"rate_abuse":          {20, 5 * time.Minute},
	}
}

// Components a process may run.
const (
	ComponentHub            = "hub"
	ComponentSessionWorker  = "session-worker"
	ComponentSecurityWorker = "security-worker"
	ComponentMediaWorker    = "media-worker"
)

// AllComponents are the components `serve` runs by default.
var AllComponents = []string{ComponentHub, ComponentSessionWorker, ComponentSecurityWorker, ComponentMediaWorker}

// Runs reports whether the process runs component c.
func (c Config) Runs(component string) bool {
	for _, x := range c.Components {
		if x == component {
			return true
		}
	}
	return false
}

// Default returns the configuration with every default and no secret.
func Default() Config {
	return Config{
		ListenAddr:           ":8080",
		JWTIssuer:            "medianest",
		JWTAudience:          "medianest-users",
		DataDir:              "./data",
		SubjectPrefix:        "medianest",
		SessionMode:          SessionStrict,
		LogLevel:             "info",
		LogFormat:            "json",
		RateConnectPerMin:    10,
		RateEventsPerMin:     100,
		PingInterval:         25 * time.Second,
		PingTimeout:          20 * time.Second,
		MaxPayload:           1_000_000,
		SendQueue:            128,
		WriteDelay:           20 * time.Millisecond,
		AckTimeout:           5 * time.Second,
		ShutdownTimeout:      10 * time.Second,
		TokenMaxLifetime:     24 * time.Hour,
		ExpiryWarning:        time.Minute,
		ExpiryGrace:          5 * time.Second,
		EventsMaxAge:         7 * 24 * time.Hour,
		CleanupInterval:      10 * time.Minute,
		Components:           append([]string(nil), AllComponents...),
		SecurityBlockIPs:     true,
		SecurityBlockFor:     15 * time.Minute,
		SecurityRevokeReplay: true,
		Detections:           DetectionRules(),
		MediaProgressRate:    4,
	}
}

// LookupFunc reads one variable, like os.LookupEnv.
type LookupFunc func(string) (string, bool)

// Load reads the environment through lookup over the defaults and
// validates the result. It reports every problem at once.
func Load(lookup LookupFunc) (Config, error) {
	c := Default()
	var errs []error
	str := func(name string, dst *string) {
		if v, ok := lookup(name); ok {
			*dst = strings.TrimSpace(v)
		}
	}
	secret := func(name string, dst *string) {
		if v, ok := lookup(name); ok {
			*dst = v // secrets are taken verbatim
		}
	}
	integer := func(name string, dst *int, min int) {
		v, ok := lookup(name)
		if !ok || strings.TrimSpace(v) == "" {
			return
		}
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n < min {
			errs = append(errs, fmt.Errorf("%s=%q: must be a whole number >= %d", name, v, min))
			return
		}
		*dst = n
	}
	durationFrom := func(name string, dst *time.Duration, zeroOK bool) {
		v, ok := lookup(name)
		if !ok || strings.TrimSpace(v) == "" {
			return
		}
		d, err := parseDuration(strings.TrimSpace(v))
		switch {
		case err != nil || d < 0, d == 0 && !zeroOK:
			errs = append(errs, fmt.Errorf("%s=%q: must be a positive duration like 25s or milliseconds like 25000", name, v))
			return
		}
		*dst = d
	}
	duration := func(name string, dst *time.Duration) { durationFrom(name, dst, false) }
	list := func(name string) []string {
		v, ok := lookup(name)
		if !ok {
			return nil
		}
		var out []string
		for _, p := range strings.Split(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
		return out
	}

	str("MEDIANEST_LISTEN_ADDR", &c.ListenAddr)
	secret("MEDIANEST_JWT_SECRET", &c.JWTSecret)
	secret("MEDIANEST_JWT_SECRET_PREVIOUS", &c.JWTSecretPrevious)
	str("MEDIANEST_JWT_ISSUER", &c.JWTIssuer)
	str("MEDIANEST_JWT_AUDIENCE", &c.JWTAudience)
	c.AllowedOrigins = list("MEDIANEST_ALLOWED_ORIGINS")
	str("MEDIANEST_NATS_URL", &c.NATSURL)
	str("MEDIANEST_NATS_LISTEN", &c.NATSListen)
	str("MEDIANEST_DATA_DIR", &c.DataDir)
	str("MEDIANEST_DATABASE_URL", &c.DatabaseURL)
	str("MEDIANEST_SUBJECT_PREFIX", &c.SubjectPrefix)
	str("MEDIANEST_SESSION_MODE", &c.SessionMode)
	str("MEDIANEST_LOG_LEVEL", &c.LogLevel)
	str("MEDIANEST_LOG_FORMAT", &c.LogFormat)
	for _, p := range list("MEDIANEST_TRUSTED_PROXIES") {
		pfx, err := parsePrefix(p)
		if err != nil {
			errs = append(errs, fmt.Errorf("MEDIANEST_TRUSTED_PROXIES: %q: must be a CIDR like 10.0.0.0/8 or an IP", p))
			continue
		}
		c.TrustedProxies = append(c.TrustedProxies, pfx)
	}
	integer("MEDIANEST_RATE_CONNECT_PER_MINUTE", &c.RateConnectPerMin, 1)
	integer("MEDIANEST_RATE_EVENTS_PER_MINUTE", &c.RateEventsPerMin, 1)
	duration("MEDIANEST_PING_INTERVAL", &c.PingInterval)
	duration("MEDIANEST_PING_TIMEOUT", &c.PingTimeout)
	var maxPayload = int(c.MaxPayload)
	integer("MEDIANEST_MAX_PAYLOAD", &maxPayload, 1024)
	c.MaxPayload = int64(maxPayload)
	integer("MEDIANEST_SEND_QUEUE", &c.SendQueue, 4)
	durationFrom("MEDIANEST_WRITE_DELAY", &c.WriteDelay, true) // 0 turns it off
	if c.WriteDelay > time.Second {
		errs = append(errs, fmt.Errorf("MEDIANEST_WRITE_DELAY=%s: at most 1s (it adds up to that much latency to frames under load)", c.WriteDelay))
	}
	duration("MEDIANEST_ACK_TIMEOUT", &c.AckTimeout)
	duration("MEDIANEST_SHUTDOWN_TIMEOUT", &c.ShutdownTimeout)
	str("MEDIANEST_NODE_ID", &c.NodeID)
	duration("MEDIANEST_TOKEN_MAX_LIFETIME", &c.TokenMaxLifetime)
	duration("MEDIANEST_EXPIRY_WARNING", &c.ExpiryWarning)
	duration("MEDIANEST_EXPIRY_GRACE", &c.ExpiryGrace)
	duration("MEDIANEST_EVENTS_MAX_AGE", &c.EventsMaxAge)
	duration("MEDIANEST_CLEANUP_INTERVAL", &c.CleanupInterval)
	if v := list("MEDIANEST_COMPONENTS"); v != nil {
		c.Components = v
	}
	boolean := func(name string, dst *bool) {
		v, ok := lookup(name)
		if !ok || strings.TrimSpace(v) == "" {
			return
		}
		b, err := strconv.ParseBool(strings.TrimSpace(v))
		if err != nil {
			errs = append(errs, fmt.Errorf("%s=%q: must be true or false", name, v))
			return
		}
		*dst = b
	}
	boolean("MEDIANEST_SECURITY_BLOCK_IPS", &c.SecurityBlockIPs)
	duration("MEDIANEST_SECURITY_BLOCK_FOR", &c.SecurityBlockFor)
	boolean("MEDIANEST_SECURITY_REVOKE_REPLAY", &c.SecurityRevokeReplay)
	str("MEDIANEST_ALERT_WEBHOOK_URL", &c.AlertWebhookURL)
	str("MEDIANEST_MEDIA_ROUTES", &c.MediaRoutesFile)
	str("MEDIANEST_PPROF_ADDR", &c.PprofAddr)
	if v, ok := lookup("MEDIANEST_MEDIA_PROGRESS_RATE"); ok && strings.TrimSpace(v) != "" {
		r, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil || r < 0 {
			errs = append(errs, fmt.Errorf("MEDIANEST_MEDIA_PROGRESS_RATE=%q: must be a number >= 0 (0 turns coalescing off)", v))
		} else {
			c.MediaProgressRate = r
		}
	}
	secret("MEDIANEST_ALERT_WEBHOOK_SECRET", &c.AlertWebhookSecret)
	for rule := range DetectionRules() {
		name := "MEDIANEST_DETECT_" + strings.ToUpper(rule)
		v, ok := lookup(name)
		if !ok || strings.TrimSpace(v) == "" {
			continue
		}
		count, window, found := strings.Cut(strings.TrimSpace(v), "/")
		n, err1 := strconv.Atoi(count)
		d, err2 := parseDuration(window)
		if !found || err1 != nil || err2 != nil || n < 1 || d <= 0 {
			errs = append(errs, fmt.Errorf("%s=%q: must be count/window, like 10/60s", name, v))
			continue
		}
		c.Detections[rule] = Threshold{Count: n, Window: d}
	}

	if err := c.Validate(); err != nil {
		errs = append(errs, err)
	}
	return c, errors.Join(errs...)
}

// Validate checks the rules that span fields or need no parsing.
func (c Config) Validate() error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if len(c.JWTSecret) == 0 {
		add("MEDIANEST_JWT_SECRET: required (at least 32 bytes; `medianest-hub serve --dev` makes one for development)")
	} else if len(c.JWTSecret) < 32 {
		add("MEDIANEST_JWT_SECRET: must be at least 32 bytes, got %d", len(c.JWTSecret))
	}
	if c.JWTSecretPrevious != "" && len(c.JWTSecretPrevious) < 32 {
		add("MEDIANEST_JWT_SECRET_PREVIOUS: must be at least 32 bytes, got %d", len(c.JWTSecretPrevious))
	}
	if c.JWTIssuer == "" {
		add("MEDIANEST_JWT_ISSUER: must not be empty")
	}
	if c.JWTAudience == "" {
		add("MEDIANEST_JWT_AUDIENCE: must not be empty")
	}
	if _, _, err := net.SplitHostPort(c.ListenAddr); err != nil {
		add("MEDIANEST_LISTEN_ADDR=%q: must be host:port, like :8080", c.ListenAddr)
	}
	if c.NATSListen != "" {
		if _, _, err := net.SplitHostPort(c.NATSListen); err != nil {
			add("MEDIANEST_NATS_LISTEN=%q: must be host:port, like 127.0.0.1:4222", c.NATSListen)
		}
		if c.NATSURL != "" {
			add("MEDIANEST_NATS_LISTEN: only applies to the embedded server; unset it or MEDIANEST_NATS_URL")
		}
	}
	if c.NATSURL != "" {
		for _, u := range strings.Split(c.NATSURL, ",") {
			if pu, err := url.Parse(strings.TrimSpace(u)); err != nil || pu.Host == "" {
				add("MEDIANEST_NATS_URL: %q: must be a URL like nats://host:4222", u)
			}
		}
	}
	if c.DatabaseURL != "" && !strings.HasPrefix(c.DatabaseURL, "postgres://") && !strings.HasPrefix(c.DatabaseURL, "postgresql://") &&
		!strings.HasPrefix(c.DatabaseURL, "sqlite:") && !strings.HasPrefix(c.DatabaseURL, "file:") {
		add("MEDIANEST_DATABASE_URL: must start with postgres://, postgresql://, sqlite: or file:")
	}
	if c.DataDir == "" {
		add("MEDIANEST_DATA_DIR: must not be empty")
	}
	if c.SubjectPrefix == "" || strings.ContainsAny(c.SubjectPrefix, ".*> \t\r\n") {
		add("MEDIANEST_SUBJECT_PREFIX=%q: must be one subject token, without . * > or white space", c.SubjectPrefix)
	}
	switch c.SessionMode {
	case SessionStateless, SessionStrict:
	default:
		add("MEDIANEST_SESSION_MODE=%q: must be strict or stateless", c.SessionMode)
	}
	switch c.LogLevel {
	case "trace", "debug", "info", "warn", "error":
	default:
		add("MEDIANEST_LOG_LEVEL=%q: must be trace, debug, info, warn or error", c.LogLevel)
	}
	if c.LogFormat != "json" && c.LogFormat != "console" {
		add("MEDIANEST_LOG_FORMAT=%q: must be json or console", c.LogFormat)
	}
	for _, o := range c.AllowedOrigins {
		if o == "*" {
			continue
		}
		if u, err := url.Parse(o); err != nil || u.Scheme == "" || u.Host == "" || (u.Path != "" && u.Path != "/") {
			add("MEDIANEST_ALLOWED_ORIGINS: %q: must be an origin like https://app.example.com, or *", o)
		}
	}
	if len(c.Components) == 0 {
		add("MEDIANEST_COMPONENTS: name at least one of %s", strings.Join(AllComponents, ", "))
	}
	for _, comp := range c.Components {
		known := false
		for _, a := range AllComponents {
			known = known || comp == a
		}
		if !known {
			add("MEDIANEST_COMPONENTS: %q: must be one of %s", comp, strings.Join(AllComponents, ", "))
		}
	}
	if c.AlertWebhookURL != "" {
		if u, err := url.Parse(c.AlertWebhookURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			add("MEDIANEST_ALERT_WEBHOOK_URL: must be an http(s) URL")
		}
	}
	if c.EventsMaxAge < c.TokenMaxLifetime {
		add("MEDIANEST_EVENTS_MAX_AGE: must be at least MEDIANEST_TOKEN_MAX_LIFETIME, so revocations outlive the tokens they match")
	}
	if c.PingTimeout >= c.PingInterval*4 {
		add("MEDIANEST_PING_TIMEOUT: must be shorter than four ping intervals")
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return nil
}

func parseDuration(s string) (time.Duration, error) {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return time.Duration(n) * time.Millisecond, nil
	}
	return time.ParseDuration(s)
}

func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p.Masked(), err
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}
