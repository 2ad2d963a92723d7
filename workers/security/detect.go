package security

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/medianest/hub/events"
)

// Rule names.
const (
	RuleBruteForce         = "brute_force"
	RuleCredentialStuffing = "credential_stuffing"
	RuleTokenReplay        = "token_replay"
	RulePrivilegeProbing   = "privilege_probing"
	RuleRateAbuse          = "rate_abuse"
)

// Rule is a detection's threshold within a sliding window.
type Rule struct {
	Threshold int
	Window    time.Duration
	Severity  string
}

// Rules are the detections' thresholds; zero fields take the defaults.
type Rules struct {
	BruteForce         Rule // ≥ 10 auth_failed from one IP in 60s
	CredentialStuffing Rule // failures for ≥ 5 distinct users from one IP in 10m
	TokenReplay        Rule // one session or jti from ≥ 3 IPs in 5m
	PrivilegeProbing   Rule // ≥ 5 access_denied for one user in 5m
	RateAbuse          Rule // ≥ 20 rate_limited for one IP or user in 5m
}

func (r *Rules) setDefaults() {
	def := func(x *Rule, n int, w time.Duration, sev string) {
		if x.Threshold <= 0 {
			x.Threshold = n
		}
		if x.Window <= 0 {
			x.Window = w
		}
		if x.Severity == "" {
			x.Severity = sev
		}
	}
	def(&r.BruteForce, 10, time.Minute, events.SeverityWarning)
	def(&r.CredentialStuffing, 5, 10*time.Minute, events.SeverityCritical)
	def(&r.TokenReplay, 3, 5*time.Minute, events.SeverityCritical)
	def(&r.PrivilegeProbing, 5, 5*time.Minute, events.SeverityWarning)
	def(&r.RateAbuse, 20, 5*time.Minute, events.SeverityWarning)
}

// MaxWindow is the longest window: how far back state must be rebuilt.
func (r Rules) MaxWindow() time.Duration {
	m := r.BruteForce.Window
	for _, x := range []Rule{r.CredentialStuffing, r.TokenReplay, r.PrivilegeProbing, r.RateAbuse} {
		m = max(m, x.Window)
	}
	return m
}

// Observation is one security event as the detector sees it.
type Observation struct {
	ID   string
	Name string // auth_failed, access_denied, …
	Time time.Time
	Data events.SecurityData
}

// Alert is a detection, raised once per rule and subject per window; Count
// grows with what follows while the window stays open.
type Alert struct {
	ID        string
	Rule      string
	Severity  string
	Subject   string // "ip:…", "user:…", "session:…", "jti:…"
	Count     int
	FirstSeen time.Time
	LastSeen  time.Time
	EventIDs  []string
	// Raised is true when this observation opened the alert (publish it),
	// false when it only counted an event into an open alert.
	Raised bool

	values map[string]struct{} // distinct values counted, for distinct rules
}

// Summary is the alert's one-line description.
func (a *Alert) Summary() string {
	switch a.Rule {
	case RuleBruteForce:
		return fmt.Sprintf("%d failed authentications from %s", a.Count, a.Subject)
	case RuleCredentialStuffing:
		return fmt.Sprintf("failed authentications for %d distinct users from %s", a.Count, a.Subject)
	case RuleTokenReplay:
		return fmt.Sprintf("%s used from %d IP addresses", a.Subject, a.Count)
	case RulePrivilegeProbing:
		return fmt.Sprintf("%d denied namespace accesses by %s", a.Count, a.Subject)
	case RuleRateAbuse:
		return fmt.Sprintf("%d rate-limit refusals for %s", a.Count, a.Subject)
	}
	return a.Rule + " on " + a.Subject
}

type key struct{ rule, subject string }

type hit struct {
	at    time.Time
	id    string
	value string // the distinct value (user, IP) for distinct-count rules
}

// series is the events of one rule and subject within the window. For a
// distinct-count rule it also counts each value's hits in the window, so
// the number of distinct values is known without a rescan.
type series struct {
	hits   []hit
	values map[string]int // value → hits in the window; nil for plain counts
}

func (s *series) add(h hit) {
	s.hits = append(s.hits, h)
	if h.value != "" {
		if s.values == nil {
			s.values = map[string]int{}
		}
		s.values[h.value]++
	}
}

func (s *series) prune(cutoff time.Time) {
	i := 0
	for i < len(s.hits) && s.hits[i].at.Before(cutoff) {
		if v := s.hits[i].value; v != "" {
			if s.values[v]--; s.values[v] == 0 {
				delete(s.values, v)
			}
		}
		i++
	}
	s.hits = s.hits[i:]
}

func (s *series) distinct() map[string]struct{} {
	seen := make(map[string]struct{}, len(s.values))
	for v := range s.values {
		seen[v] = struct{}{}
	}
	return seen
}

// maxEventIDs bounds the event ids an alert carries.
const maxEventIDs = 50

// Detector runs the detections over security events in stream order. Its
// output depends only on the events and their times, so replaying the same
// events rebuilds the same state and the same alert ids. Not safe for
// concurrent use.
type Detector struct {
	rules  Rules
	series map[key]*series
	open   map[key]*Alert
	seen   int
}

// NewDetector returns a detector with the given thresholds.
func NewDetector(r Rules) *Detector {
	r.setDefaults()
	return &Detector{rules: r, series: map[key]*series{}, open: map[key]*Alert{}}
}

// Rules returns the effective thresholds.
func (d *Detector) Rules() Rules { return d.rules }

// Observe feeds one event and returns the alerts it raised or updated.
func (d *Detector) Observe(o Observation) []*Alert {
	var out []*Alert
	add := func(a *Alert) {
		if a != nil {
			out = append(out, a)
		}
	}
	ds := o.Data
	switch o.Name {
	case events.SecAuthFailed:
		// Only credential failures count: a forged or missing token is a
		// guess; an expired one is what a returning browser presents, and
		// session_* codes follow a logout, a revocation or a database
		// outage — none of them an attack by the IP.
		if ds.IP != "" && (ds.Code == "token_invalid" || ds.Code == "token_missing") {
			add(d.count(RuleBruteForce, d.rules.BruteForce, "ip:"+ds.IP, o, ""))
		}
		if ds.IP != "" && ds.UserID != "" && (ds.Code == "token_invalid" || ds.Code == "token_expired") {
			add(d.count(RuleCredentialStuffing, d.rules.CredentialStuffing, "ip:"+ds.IP, o, ds.UserID))
		}
	case events.SecAuthenticated:
		if ds.IP != "" {
			if ds.SessionID != "" {
				add(d.count(RuleTokenReplay, d.rules.TokenReplay, "session:"+ds.SessionID, o, ds.IP))
			} else if ds.JTI != "" {
				add(d.count(RuleTokenReplay, d.rules.TokenReplay, "jti:"+ds.JTI, o, ds.IP))
			}
		}
	case events.SecAccessDenied:
		if ds.UserID != "" {
			add(d.count(RulePrivilegeProbing, d.rules.PrivilegeProbing, "user:"+ds.UserID, o, ""))
		}
	case events.SecRateLimited:
		if ds.IP != "" {
			add(d.count(RuleRateAbuse, d.rules.RateAbuse, "ip:"+ds.IP, o, ""))
		}
		if ds.UserID != "" {
			add(d.count(RuleRateAbuse, d.rules.RateAbuse, "user:"+ds.UserID, o, ""))
		}
	}
	d.seen++
	if d.seen%4096 == 0 {
		d.sweep(o.Time)
	}
	return out
}

// count adds o to the series of (rule, subject) and raises or updates the
// alert. A non-empty distinct makes the rule count distinct values.
func (d *Detector) count(name string, r Rule, subject string, o Observation, distinct string) *Alert {
	k := key{name, subject}
	s := d.series[k]
	if s == nil {
		s = &series{}
		d.series[k] = s
	}
	s.prune(o.Time.Add(-r.Window))
	s.add(hit{at: o.Time, id: o.ID, value: distinct})

	if a := d.open[k]; a != nil && !o.Time.After(a.LastSeen.Add(r.Window)) {
		if distinct != "" {
			a.values[distinct] = struct{}{}
			a.Count = len(a.values)
		} else {
			a.Count++
		}
		a.LastSeen = o.Time
		if len(a.EventIDs) < maxEventIDs {
			a.EventIDs = append(a.EventIDs, o.ID)
		}
		a.Raised = false
		return a
	}
	delete(d.open, k)
	level := len(s.hits)
	if distinct != "" {
		level = len(s.values)
	}
	if level < r.Threshold {
		return nil
	}
	var values map[string]struct{}
	if distinct != "" {
		values = s.distinct()
	}
	a := &Alert{
		ID: alertID(name, subject, o.ID), Rule: name, Severity: r.Severity, Subject: subject,
		Count: level, FirstSeen: s.hits[0].at, LastSeen: o.Time, Raised: true, values: values,
	}
	for _, h := range s.hits {
		if len(a.EventIDs) == maxEventIDs {
			break
		}
		a.EventIDs = append(a.EventIDs, h.id)
	}
	d.open[k] = a
	return a
}

// sweep forgets series and alerts idle for longer than the longest window.
func (d *Detector) sweep(now time.Time) {
	cutoff := now.Add(-d.rules.MaxWindow())
	for k, s := range d.series {
		if len(s.hits) == 0 || s.hits[len(s.hits)-1].at.Before(cutoff) {
			delete(d.series, k)
		}
	}
	for k, a := range d.open {
		if a.LastSeen.Before(cutoff) {
			delete(d.open, k)
		}
	}
}

// alertID is stable for the same rule, subject and triggering event.
func alertID(rule, subject, eventID string) string {
	sum := sha256.Sum256([]byte(rule + "\x00" + subject + "\x00" + eventID))
	return hex.EncodeToString(sum[:16])
}
