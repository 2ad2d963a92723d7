package config

import (
	"strings"
	"testing"
	"time"
)

func env(kv ...string) LookupFunc {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

const secret = "0123456789abcdef0123456789abcdef"

func TestLoadDefaults(t *testing.T) {
	c, err := Load(env("MEDIANEST_JWT_SECRET", secret))
	if err != nil {
		t.Fatal(err)
	}
	if c.ListenAddr != ":8080" || c.JWTIssuer != "medianest" || c.JWTAudience != "medianest-users" ||
		c.RateConnectPerMin != 10 || c.RateEventsPerMin != 100 || c.PingInterval != 25*time.Second ||
		c.PingTimeout != 20*time.Second || c.MaxPayload != 1_000_000 || c.SubjectPrefix != "medianest" {
		t.Fatalf("defaults wrong: %+v", c)
	}
}

func TestLoadValues(t *testing.T) {
	c, err := Load(env(
		"MEDIANEST_JWT_SECRET", secret,
		"MEDIANEST_ALLOWED_ORIGINS", "https://a.example, http://localhost:3000",
		"MEDIANEST_TRUSTED_PROXIES", "10.0.0.0/8,127.0.0.1",
		"MEDIANEST_PING_INTERVAL", "300",
		"MEDIANEST_PING_TIMEOUT", "200ms",
		"MEDIANEST_RATE_CONNECT_PER_MINUTE", "5",
		"MEDIANEST_WRITE_DELAY", "10ms",
	))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.AllowedOrigins) != 2 || c.AllowedOrigins[1] != "http://localhost:3000" {
		t.Fatalf("origins = %v", c.AllowedOrigins)
	}
	if len(c.TrustedProxies) != 2 || c.TrustedProxies[1].String() != "127.0.0.1/32" {
		t.Fatalf("proxies = %v", c.TrustedProxies)
	}
	if c.PingInterval != 300*time.Millisecond || c.PingTimeout != 200*time.Millisecond || c.RateConnectPerMin != 5 || c.WriteDelay != 10*time.Millisecond {
		t.Fatalf("values = %+v", c)
	}
	d, err := Load(env("MEDIANEST_JWT_SECRET", secret, "MEDIANEST_DETECT_BRUTE_FORCE", "5/30s", "MEDIANEST_SECURITY_BLOCK_IPS", "false", "MEDIANEST_COMPONENTS", "hub"))
	if err != nil {
		t.Fatal(err)
	}
	if d.Detections["brute_force"] != (Threshold{5, 30 * time.Second}) || d.Detections["rate_abuse"].Count != 20 || d.SecurityBlockIPs || !d.Runs(ComponentHub) || d.Runs(ComponentSecurityWorker) {
		t.Fatalf("security settings = %+v", d)
	}
}

// TestWriteDelayZeroTurnsItOff: unlike the other durations, 0 is a
// valid write delay: every frame written at once, even under load.
func TestWriteDelayZeroTurnsItOff(t *testing.T) {
	c, err := Load(env("MEDIANEST_JWT_SECRET", secret))
	if err != nil || c.WriteDelay != 20*time.Millisecond {
		t.Fatalf("default write delay %v, %v; want 20ms", c.WriteDelay, err)
	}
	for _, v := range []string{"0", "0s", "0ms"} {
		c, err := Load(env("MEDIANEST_JWT_SECRET", secret, "MEDIANEST_WRITE_DELAY", v))
		if err != nil {
			t.Fatalf("MEDIANEST_WRITE_DELAY=%s: %v", v, err)
		}
		if c.WriteDelay != 0 {
			t.Fatalf("MEDIANEST_WRITE_DELAY=%s: delay %v", v, c.WriteDelay)
		}
	}
}

func TestLoadErrorsNameTheVariable(t *testing.T) {
	tests := []struct {
		name string
		env  LookupFunc
		want string
	}{
		{"missing secret", env(), "MEDIANEST_JWT_SECRET: required"},
		{"short secret", env("MEDIANEST_JWT_SECRET", "short"), "MEDIANEST_JWT_SECRET: must be at least 32 bytes"},
		{"short previous", env("MEDIANEST_JWT_SECRET", secret, "MEDIANEST_JWT_SECRET_PREVIOUS", "x"), "MEDIANEST_JWT_SECRET_PREVIOUS"},
		{"bad rate", env("MEDIANEST_JWT_SECRET", secret, "MEDIANEST_RATE_EVENTS_PER_MINUTE", "lots"), "MEDIANEST_RATE_EVENTS_PER_MINUTE"},
		{"zero rate", env("MEDIANEST_JWT_SECRET", secret, "MEDIANEST_RATE_CONNECT_PER_MINUTE", "0"), "MEDIANEST_RATE_CONNECT_PER_MINUTE"},
		{"bad mode", env("MEDIANEST_JWT_SECRET", secret, "MEDIANEST_SESSION_MODE", "loose"), "MEDIANEST_SESSION_MODE"},
		{"bad proxy", env("MEDIANEST_JWT_SECRET", secret, "MEDIANEST_TRUSTED_PROXIES", "nope"), "MEDIANEST_TRUSTED_PROXIES"},
		{"bad origin", env("MEDIANEST_JWT_SECRET", secret, "MEDIANEST_ALLOWED_ORIGINS", "example.com"), "MEDIANEST_ALLOWED_ORIGINS"},
		{"bad listen", env("MEDIANEST_JWT_SECRET", secret, "MEDIANEST_LISTEN_ADDR", "8080"), "MEDIANEST_LISTEN_ADDR"},
		{"bad prefix", env("MEDIANEST_JWT_SECRET", secret, "MEDIANEST_SUBJECT_PREFIX", "a.b"), "MEDIANEST_SUBJECT_PREFIX"},
		{"bad log format", env("MEDIANEST_JWT_SECRET", secret, "MEDIANEST_LOG_FORMAT", "xml"), "MEDIANEST_LOG_FORMAT"},
		{"bad database", env("MEDIANEST_JWT_SECRET", secret, "MEDIANEST_DATABASE_URL", "mysql://x"), "MEDIANEST_DATABASE_URL"},
		{"bad duration", env("MEDIANEST_JWT_SECRET", secret, "MEDIANEST_PING_INTERVAL", "soon"), "MEDIANEST_PING_INTERVAL"},
		{"negative write delay", env("MEDIANEST_JWT_SECRET", secret, "MEDIANEST_WRITE_DELAY", "-5ms"), "MEDIANEST_WRITE_DELAY"},
		{"zero ping interval", env("MEDIANEST_JWT_SECRET", secret, "MEDIANEST_PING_INTERVAL", "0"), "MEDIANEST_PING_INTERVAL"},
		{"write delay too long", env("MEDIANEST_JWT_SECRET", secret, "MEDIANEST_WRITE_DELAY", "5s"), "MEDIANEST_WRITE_DELAY"},
		{"bad detection", env("MEDIANEST_JWT_SECRET", secret, "MEDIANEST_DETECT_BRUTE_FORCE", "ten"), "MEDIANEST_DETECT_BRUTE_FORCE"},
		{"bad bool", env("MEDIANEST_JWT_SECRET", secret, "MEDIANEST_SECURITY_BLOCK_IPS", "maybe"), "MEDIANEST_SECURITY_BLOCK_IPS"},
		{"bad component", env("MEDIANEST_JWT_SECRET", secret, "MEDIANEST_COMPONENTS", "hub,toaster"), "MEDIANEST_COMPONENTS"},
		{"bad webhook", env("MEDIANEST_JWT_SECRET", secret, "MEDIANEST_ALERT_WEBHOOK_URL", "ftp://x"), "MEDIANEST_ALERT_WEBHOOK_URL"},
		{"listen with url", env("MEDIANEST_JWT_SECRET", secret, "MEDIANEST_NATS_URL", "nats://x:4222", "MEDIANEST_NATS_LISTEN", ":4222"), "MEDIANEST_NATS_LISTEN"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(tt.env)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tt.want)
			}
			if strings.Contains(err.Error(), secret) {
				t.Fatalf("error leaks the secret: %v", err)
			}
		})
	}
}
