package auth

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

var (
	secret   = []byte("0123456789abcdef0123456789abcdef")
	previous = []byte("fedcba9876543210fedcba9876543210")
	other    = []byte("another-secret-another-secret-xx")
)

func newVerifier(t *testing.T, prev []byte) *Verifier {
	t.Helper()
	v, err := NewVerifier(Config{Secret: secret, PreviousSecret: prev, Issuer: "medianest", Audience: "medianest-users"})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func sign(t *testing.T, method jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func good(now time.Time) jwt.MapClaims {
	return jwt.MapClaims{
		"sub": "u1", "iss": "medianest", "aud": "medianest-users",
		"exp": now.Add(time.Hour).Unix(), "iat": now.Unix(), "role": "USER",
	}
}

func with(c jwt.MapClaims, k string, v any) jwt.MapClaims {
	out := jwt.MapClaims{}
	for kk, vv := range c {
		out[kk] = vv
	}
	if v == nil {
		delete(out, k)
	} else {
		out[k] = v
	}
	return out
}

func TestVerifyRejects(t *testing.T) {
	now := time.Now()
	v := newVerifier(t, nil)
	valid := sign(t, jwt.SigningMethodHS256, secret, good(now))
	parts := strings.Split(valid, ".")
	tamperedPayload := base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"admin","iss":"medianest","aud":"medianest-users","exp":9999999999,"role":"admin"}`))
	noneHeader := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`))
	rsHeader := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"RS256","typ":"JWT"}`))

	tests := []struct {
		name, token, code string
	}{
		{"empty", "", CodeTokenMissing},
		{"garbage", "not-a-token", CodeTokenInvalid},
		{"three garbage parts", "a.b.c", CodeTokenInvalid},
		{"tampered payload", parts[0] + "." + tamperedPayload + "." + parts[2], CodeTokenInvalid},
		{"tampered signature", parts[0] + "." + parts[1] + "." + strings.Repeat("A", len(parts[2])), CodeTokenInvalid},
		{"wrong secret", sign(t, jwt.SigningMethodHS256, other, good(now)), CodeTokenInvalid},
		{"alg none", noneHeader + "." + parts[1] + ".", CodeTokenInvalid},
		{"alg none via library", sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, good(now)), CodeTokenInvalid},
		{"HS512", sign(t, jwt.SigningMethodHS512, secret, good(now)), CodeTokenInvalid},
		{"RS256 header", rsHeader + "." + parts[1] + "." + parts[2], CodeTokenInvalid},
		{"wrong issuer", sign(t, jwt.SigningMethodHS256, secret, with(good(now), "iss", "evil")), CodeTokenInvalid},
		{"no issuer", sign(t, jwt.SigningMethodHS256, secret, with(good(now), "iss", nil)), CodeTokenInvalid},
		{"wrong audience", sign(t, jwt.SigningMethodHS256, secret, with(good(now), "aud", "other")), CodeTokenInvalid},
		{"expired", sign(t, jwt.SigningMethodHS256, secret, with(good(now), "exp", now.Add(-time.Hour).Unix())), CodeTokenExpired},
		{"not yet valid", sign(t, jwt.SigningMethodHS256, secret, with(good(now), "nbf", now.Add(time.Hour).Unix())), CodeTokenInvalid},
		{"issued in the future", sign(t, jwt.SigningMethodHS256, secret, with(good(now), "iat", now.Add(time.Hour).Unix())), CodeTokenInvalid},
		{"no exp", sign(t, jwt.SigningMethodHS256, secret, with(good(now), "exp", nil)), CodeTokenInvalid},
		{"no subject", sign(t, jwt.SigningMethodHS256, secret, with(good(now), "sub", nil)), CodeTokenInvalid},
		{"bad role type", sign(t, jwt.SigningMethodHS256, secret, with(good(now), "role", 7)), CodeTokenInvalid},
		{"too large", valid + strings.Repeat("A", MaxTokenBytes), CodeTokenInvalid},
		{"previous secret not configured", sign(t, jwt.SigningMethodHS256, previous, good(now)), CodeTokenInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := v.Verify(tt.token)
			var aerr *Error
			if !errors.As(err, &aerr) {
				t.Fatalf("Verify = %+v, %v; want *Error", id, err)
			}
			if aerr.Code != tt.code {
				t.Fatalf("code = %q (%v), want %q", aerr.Code, err, tt.code)
			}
		})
	}
}

func TestVerifyAccepts(t *testing.T) {
	now := time.Now()
	tests := []struct {
		name      string
		prev      []byte
		key       []byte
		claims    jwt.MapClaims
		user      string
		roles     []string
		sessionID string
	}{
		{name: "role string upper case", key: secret, claims: good(now), user: "u1", roles: []string{"user"}},
		{name: "roles array merged", key: secret, claims: with(good(now), "roles", []string{"Admin", "user"}), user: "u1", roles: []string{"user", "admin"}},
		{name: "userId fallback", key: secret, claims: with(with(good(now), "sub", nil), "userId", "u9"), user: "u9", roles: []string{"user"}},
		{name: "sid", key: secret, claims: with(good(now), "sid", "s1"), user: "u1", roles: []string{"user"}, sessionID: "s1"},
		{name: "sessionId fallback", key: secret, claims: with(good(now), "sessionId", "s2"), user: "u1", roles: []string{"user"}, sessionID: "s2"},
		{name: "audience array", key: secret, claims: with(good(now), "aud", []string{"x", "medianest-users"}), user: "u1", roles: []string{"user"}},
		{name: "expired within leeway", key: secret, claims: with(good(now), "exp", now.Add(-5*time.Second).Unix()), user: "u1", roles: []string{"user"}},
		{name: "previous secret during rotation", prev: previous, key: previous, claims: good(now), user: "u1", roles: []string{"user"}},
		{name: "current secret during rotation", prev: previous, key: secret, claims: good(now), user: "u1", roles: []string{"user"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := newVerifier(t, tt.prev)
			id, err := v.Verify(sign(t, jwt.SigningMethodHS256, tt.key, tt.claims))
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if id.UserID != tt.user || strings.Join(id.Roles, ",") != strings.Join(tt.roles, ",") || id.SessionID != tt.sessionID {
				t.Fatalf("identity = %+v", id)
			}
			if len(id.TokenSHA256) != 64 {
				t.Fatalf("TokenSHA256 = %q", id.TokenSHA256)
			}
		})
	}
}

func TestMaxLifetime(t *testing.T) {
	now := time.Now()
	v, err := NewVerifier(Config{Secret: secret, Issuer: "medianest", Audience: "medianest-users", MaxLifetime: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		claims jwt.MapClaims
		ok     bool
	}{
		{"one day", with(good(now), "exp", now.Add(24*time.Hour).Unix()), true},
		{"thirty days", with(good(now), "exp", now.Add(30*24*time.Hour).Unix()), false},
		{"thirty days without iat", with(with(good(now), "iat", nil), "exp", now.Add(30*24*time.Hour).Unix()), false},
		{"an hour without iat", with(with(good(now), "iat", nil), "exp", now.Add(time.Hour).Unix()), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := v.Verify(sign(t, jwt.SigningMethodHS256, secret, tt.claims))
			if (err == nil) != tt.ok {
				t.Fatalf("err = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

func TestMintRoundTrip(t *testing.T) {
	v := newVerifier(t, nil)
	tok, err := Mint(secret, MintOptions{UserID: "42", Roles: []string{"admin"}, SessionID: "s", Email: "a@b.c", Name: "Ann", JTI: "j1", Issuer: "medianest", Audience: "medianest-users", TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	id, err := v.Verify(tok)
	if err != nil {
		t.Fatal(err)
	}
	if id.UserID != "42" || id.Role() != "admin" || id.SessionID != "s" || id.Email != "a@b.c" || id.Name != "Ann" || id.JTI != "j1" {
		t.Fatalf("identity = %+v", id)
	}
	if !id.HasAnyRole("user", "admin") || id.HasAnyRole("ops") {
		t.Fatalf("HasAnyRole wrong for %v", id.Roles)
	}
	if _, err := Mint(secret, MintOptions{}); err == nil {
		t.Fatal("Mint without user id succeeded")
	}
}

func BenchmarkVerify(b *testing.B) {
	v, _ := NewVerifier(Config{Secret: secret, Issuer: "medianest", Audience: "medianest-users"})
	tok, _ := Mint(secret, MintOptions{UserID: "42", Roles: []string{"user"}, Issuer: "medianest", Audience: "medianest-users"})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(tok); err != nil {
			b.Fatal(err)
		}
	}
}
