package schema

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func envelope(typ, data string) string {
	return `{"specversion":"1.0","id":"e1","source":"test","type":"` + typ +
		`","time":"2026-12-03T10:00:00Z","datacontenttype":"application/json","data":` + data + `}`
}

func TestValidate(t *testing.T) {
	v, err := NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, raw, reason string
	}{
		{"created", envelope("medianest.session.created.v1", `{"session_id":"s","user_id":"u","expires_at":"2026-12-04T00:00:00Z"}`), ""},
		{"created with sha", envelope("medianest.session.created.v1", `{"session_id":"s","user_id":"u","expires_at":"2026-12-04T00:00:00Z","token_sha256":"`+strings.Repeat("ab", 32)+`"}`), ""},
		{"refreshed", envelope("medianest.session.refreshed.v1", `{"session_id":"s","expires_at":"2026-12-04T00:00:00+01:00"}`), ""},
		{"ended", envelope("medianest.session.ended.v1", `{"session_id":"s"}`), ""},
		{"revoked by user", envelope("medianest.session.revoked.v1", `{"user_id":"u","reason":"stolen"}`), ""},
		{"revoked by jti", envelope("medianest.session.revoked.v1", `{"jti":"j","reason":"leak"}`), ""},
		{"not json", `{`, "not JSON"},
		{"no envelope fields", `{"type":"medianest.session.ended.v1"}`, "envelope"},
		{"wrong specversion", strings.Replace(envelope("medianest.session.ended.v1", `{"session_id":"s"}`), `"1.0"`, `"0.3"`, 1), "envelope"},
		{"bad time", strings.Replace(envelope("medianest.session.ended.v1", `{"session_id":"s"}`), "2026-12-03T10:00:00Z", "yesterday", 1), "envelope"},
		{"unknown type", envelope("medianest.session.exploded.v1", `{}`), "unknown event type"},
		{"missing user", envelope("medianest.session.created.v1", `{"session_id":"s","expires_at":"2026-12-04T00:00:00Z"}`), "data"},
		{"bad expiry", envelope("medianest.session.created.v1", `{"session_id":"s","user_id":"u","expires_at":"soon"}`), "data"},
		{"bad sha", envelope("medianest.session.created.v1", `{"session_id":"s","user_id":"u","expires_at":"2026-12-04T00:00:00Z","token_sha256":"xyz"}`), "data"},
		{"revoked without target", envelope("medianest.session.revoked.v1", `{"reason":"x"}`), "data"},
		{"revoked with two targets", envelope("medianest.session.revoked.v1", `{"user_id":"u","jti":"j","reason":"x"}`), "data"},
		{"revoked without reason", envelope("medianest.session.revoked.v1", `{"user_id":"u"}`), "data"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The fast path agrees with the full validation.
			var env Envelope
			if json.Unmarshal([]byte(tt.raw), &env) == nil {
				ferr := v.ValidateEnvelope(&env)
				if (ferr == nil) != (tt.reason == "") {
					t.Fatalf("ValidateEnvelope = %v, want failure %v", ferr, tt.reason != "")
				}
			}
			_, err := v.Validate([]byte(tt.raw))
			if tt.reason == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			var ve *ValidationError
			if !errors.As(err, &ve) || !strings.Contains(ve.Error(), tt.reason) {
				t.Fatalf("err = %v, want a ValidationError mentioning %q", err, tt.reason)
			}
		})
	}
}
