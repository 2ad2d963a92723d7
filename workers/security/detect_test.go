package security

import (
	"fmt"
	"testing"
	"time"

	"github.com/medianest/hub/events"
)

func obs(i int, name string, at time.Time, d events.SecurityData) Observation {
	return Observation{ID: fmt.Sprint("e", i), Name: name, Time: at, Data: d}
}

func TestDetections(t *testing.T) {
	t0 := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		name    string
		events  func() []Observation
		rule    string
		subject string
		raised  int // alerts raised
		count   int // final count of the last alert
	}{
		{"brute force: 12 failures in 60s, one alert counting all", func() []Observation {
			var out []Observation
			for i := range 12 {
				out = append(out, obs(i, events.SecAuthFailed, t0.Add(time.Duration(i)*time.Second), events.SecurityData{IP: "1.2.3.4", Code: "token_invalid"}))
			}
			return out
		}, RuleBruteForce, "ip:1.2.3.4", 1, 12},
		{"brute force: 9 failures stay quiet", func() []Observation {
			var out []Observation
			for i := range 9 {
				out = append(out, obs(i, events.SecAuthFailed, t0.Add(time.Duration(i)*time.Second), events.SecurityData{IP: "1.2.3.4", Code: "token_invalid"}))
			}
			return out
		}, RuleBruteForce, "", 0, 0},
		{"brute force: a database outage is not an attack", func() []Observation {
			var out []Observation
			for i := range 30 {
				out = append(out, obs(i, events.SecAuthFailed, t0.Add(time.Duration(i)*time.Second), events.SecurityData{IP: "1.2.3.4", Code: "session_unavailable", UserID: fmt.Sprint("u", i)}))
			}
			return out
		}, RuleBruteForce, "", 0, 0},
		{"brute force: failures spread wider than the window stay quiet", func() []Observation {
			var out []Observation
			for i := range 20 {
				out = append(out, obs(i, events.SecAuthFailed, t0.Add(time.Duration(i)*7*time.Second), events.SecurityData{IP: "1.2.3.4", Code: "token_invalid"}))
			}
			return out
		}, RuleBruteForce, "", 0, 0},
		{"brute force: a new window raises a new alert", func() []Observation {
			var out []Observation
			for i := range 10 {
				out = append(out, obs(i, events.SecAuthFailed, t0.Add(time.Duration(i)*time.Second), events.SecurityData{IP: "1.2.3.4", Code: "token_invalid"}))
			}
			for i := range 10 {
				out = append(out, obs(100+i, events.SecAuthFailed, t0.Add(10*time.Minute+time.Duration(i)*time.Second), events.SecurityData{IP: "1.2.3.4", Code: "token_invalid"}))
			}
			return out
		}, RuleBruteForce, "ip:1.2.3.4", 2, 10},
		{"brute force: expired tokens are not guesses", func() []Observation {
			var out []Observation
			for i := range 12 {
				out = append(out, obs(i, events.SecAuthFailed, t0.Add(time.Duration(i)*time.Second), events.SecurityData{IP: "1.2.3.4", Code: "token_expired"}))
			}
			return out
		}, RuleBruteForce, "", 0, 0},
		{"credential stuffing: 5 distinct users from one IP", func() []Observation {
			var out []Observation
			for i := range 6 {
				out = append(out, obs(i, events.SecAuthFailed, t0.Add(time.Duration(i)*time.Minute), events.SecurityData{IP: "5.6.7.8", Code: "token_invalid", UserID: fmt.Sprint("u", i%6)}))
			}
			return out
		}, RuleCredentialStuffing, "ip:5.6.7.8", 1, 6},
		{"credential stuffing: one user many times is not stuffing", func() []Observation {
			var out []Observation
			for i := range 9 {
				out = append(out, obs(i, events.SecAuthFailed, t0.Add(time.Duration(i)*time.Minute), events.SecurityData{IP: "5.6.7.8", Code: "token_invalid", UserID: "u1"}))
			}
			return out
		}, RuleCredentialStuffing, "", 0, 0},
		{"credential stuffing: users that left the window are not counted", func() []Observation {
			// Four users, then 11 minutes later two of them again and two
			// new ones: never 5 distinct within 10 minutes.
			var out []Observation
			for i := range 4 {
				out = append(out, obs(i, events.SecAuthFailed, t0.Add(time.Duration(i)*time.Second), events.SecurityData{IP: "5.6.7.8", Code: "token_invalid", UserID: fmt.Sprint("u", i)}))
			}
			for i := range 4 {
				out = append(out, obs(10+i, events.SecAuthFailed, t0.Add(11*time.Minute+time.Duration(i)*time.Second), events.SecurityData{IP: "5.6.7.8", Code: "token_invalid", UserID: fmt.Sprint("u", i+2)}))
			}
			return out
		}, RuleCredentialStuffing, "", 0, 0},
		{"credential stuffing: a user seen twice stays counted while one sighting is in the window", func() []Observation {
			// u0 at 0 and 9 min; u1..u4 at 10–13 min: u0's first sighting
			// leaves the window, its second keeps it counted → 5 distinct.
			out := []Observation{
				obs(0, events.SecAuthFailed, t0, events.SecurityData{IP: "5.6.7.8", Code: "token_invalid", UserID: "u0"}),
				obs(1, events.SecAuthFailed, t0.Add(9*time.Minute), events.SecurityData{IP: "5.6.7.8", Code: "token_invalid", UserID: "u0"}),
			}
			for i := 1; i <= 4; i++ {
				out = append(out, obs(1+i, events.SecAuthFailed, t0.Add(time.Duration(9+i)*time.Minute), events.SecurityData{IP: "5.6.7.8", Code: "token_invalid", UserID: fmt.Sprint("u", i)}))
			}
			return out
		}, RuleCredentialStuffing, "ip:5.6.7.8", 1, 5},
		{"token replay: one session from 3 IPs", func() []Observation {
			var out []Observation
			for i := range 4 {
				out = append(out, obs(i, events.SecAuthenticated, t0.Add(time.Duration(i)*time.Second), events.SecurityData{IP: fmt.Sprint("10.0.0.", i%3), UserID: "u", SessionID: "s1"}))
			}
			return out
		}, RuleTokenReplay, "session:s1", 1, 3},
		{"token replay: jti without session", func() []Observation {
			var out []Observation
			for i := range 3 {
				out = append(out, obs(i, events.SecAuthenticated, t0, events.SecurityData{IP: fmt.Sprint("10.0.0.", i), UserID: "u", JTI: "j"}))
			}
			return out
		}, RuleTokenReplay, "jti:j", 1, 3},
		{"privilege probing", func() []Observation {
			var out []Observation
			for i := range 5 {
				out = append(out, obs(i, events.SecAccessDenied, t0.Add(time.Duration(i)*time.Minute), events.SecurityData{IP: "1.1.1.1", UserID: "eve", RequiredRoles: []string{"admin"}}))
			}
			return out
		}, RulePrivilegeProbing, "user:eve", 1, 5},
		{"rate abuse by user across IPs", func() []Observation {
			var out []Observation
			for i := range 20 {
				out = append(out, obs(i, events.SecRateLimited, t0.Add(time.Duration(i)*time.Second), events.SecurityData{IP: fmt.Sprint("9.9.9.", i), UserID: "spammer", Limit: "events"}))
			}
			return out
		}, RuleRateAbuse, "user:spammer", 1, 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := NewDetector(Rules{})
			raised := 0
			var last *Alert
			for _, o := range tt.events() {
				for _, a := range d.Observe(o) {
					if a.Rule != tt.rule {
						continue
					}
					if a.Subject != tt.subject {
						t.Fatalf("alert on %q, want %q", a.Subject, tt.subject)
					}
					if a.Raised {
						raised++
					}
					last = a
				}
			}
			if raised != tt.raised {
				t.Fatalf("raised %d alerts, want %d", raised, tt.raised)
			}
			if tt.raised > 0 && last.Count != tt.count {
				t.Fatalf("count = %d, want %d", last.Count, tt.count)
			}
		})
	}
}

func TestDetectorIsDeterministic(t *testing.T) {
	t0 := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	var in []Observation
	for i := range 40 {
		in = append(in, obs(i, events.SecAuthFailed, t0.Add(time.Duration(i)*500*time.Millisecond), events.SecurityData{IP: fmt.Sprint("1.2.3.", i%2), Code: "token_invalid", UserID: fmt.Sprint("u", i%7)}))
	}
	ids := func() []string {
		d := NewDetector(Rules{})
		var out []string
		for _, o := range in {
			for _, a := range d.Observe(o) {
				if a.Raised {
					out = append(out, a.ID)
				}
			}
		}
		return out
	}
	a, b := ids(), ids()
	if len(a) == 0 || fmt.Sprint(a) != fmt.Sprint(b) {
		t.Fatalf("replays differ or raise nothing: %v vs %v", a, b)
	}
}
