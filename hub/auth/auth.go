// Package auth verifies the JSON Web Tokens that MediaNest clients present
// and mints tokens for development and tests. Verification pins HS256,
// checks issuer, audience and expiry, honours nbf and iat with a leeway, and
// accepts a previous secret during rotation. A [Verifier] is immutable and
// safe for concurrent use.
package auth

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Error codes a client reads in connect_error data.code.
const (
	CodeTokenMissing   = "token_missing"
	CodeTokenInvalid   = "token_invalid"
	CodeTokenExpired   = "token_expired"
	CodeSessionInvalid = "session_invalid"
	CodeSessionRevoked = "session_revoked"
)

// MaxTokenBytes bounds the size of a token; a longer one is invalid.
const MaxTokenBytes = 8 << 10

// Error is a verification failure with a stable client-facing code. The
// wrapped cause is for logs only.
type Error struct {
	Code  string
	Cause error
}

func (e *Error) Error() string {
	if e.Cause == nil {
		return "auth: " + e.Code
	}
	return "auth: " + e.Code + ": " + e.Cause.Error()
}

func (e *Error) Unwrap() error { return e.Cause }

// Identity is what a verified token says about its bearer.
type Identity struct {
	UserID    string
	Roles     []string // lower case, without duplicates, in token order
	SessionID string
	Email     string
	Name      string
	JTI       string
	ExpiresAt time.Time
	IssuedAt  time.Time
	// TokenSHA256 is the hex SHA-256 of the token, for session lookups by token.
	TokenSHA256 string
}

// Role returns the first role, or "" when there is none.
func (id *Identity) Role() string {
	if len(id.Roles) == 0 {
		return ""
	}
	return id.Roles[0]
}

// HasAnyRole reports whether the identity holds one of roles (lower case).
func (id *Identity) HasAnyRole(roles ...string) bool {
	for _, want := range roles {
		for _, have := range id.Roles {
			if have == want {
				return true
			}
		}
	}
	return false
}

// Config configures a [Verifier].
type Config struct {
	// Secret is the current HMAC secret; required.
	Secret []byte
	// PreviousSecret, when set, is also accepted (secret rotation).
	PreviousSecret []byte
	// Issuer must equal the iss claim. Required.
	Issuer string
	// Audience must be one of the aud claim's values. Required.
	Audience string
	// Leeway is the clock skew allowed on exp, nbf and iat; zero means 30s.
	Leeway time.Duration
	// MaxLifetime, when set, refuses tokens valid for longer (exp - iat, or
	// exp - now without iat). Revocations are kept this long, so a longer
	// token would outlive its revocation.
	MaxLifetime time.Duration
}

// Verifier checks tokens.
type Verifier struct {
	cfg    Config
	parser *jwt.Parser
}

// NewVerifier returns a Verifier for cfg.
func NewVerifier(cfg Config) (*Verifier, error) {
	if len(cfg.Secret) == 0 {
		return nil, errors.New("auth: secret is required")
	}
	if cfg.Issuer == "" || cfg.Audience == "" {
		return nil, errors.New("auth: issuer and audience are required")
	}
	if cfg.Leeway == 0 {
		cfg.Leeway = 30 * time.Second
	}
	p := jwt.NewParser(
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithIssuer(cfg.Issuer),
		jwt.WithAudience(cfg.Audience),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(cfg.Leeway),
	)
	return &Verifier{cfg: cfg, parser: p}, nil
}

// Verify checks token and returns its identity, or an [*Error].
func (v *Verifier) Verify(token string) (*Identity, error) {
	if token == "" {
		return nil, &Error{Code: CodeTokenMissing}
	}
	if len(token) > MaxTokenBytes {
		return nil, &Error{Code: CodeTokenInvalid, Cause: errors.New("token too large")}
	}
	claims, err := v.parse(token, v.cfg.Secret)
	if err != nil && len(v.cfg.PreviousSecret) > 0 && errors.Is(err, jwt.ErrTokenSignatureInvalid) {
		claims, err = v.parse(token, v.cfg.PreviousSecret)
	}
	if err != nil {
		if errors.Is(err, jwt.ErrTokenExpired) {
			return nil, &Error{Code: CodeTokenExpired, Cause: err}
		}
		return nil, &Error{Code: CodeTokenInvalid, Cause: err}
	}
	id := claims.identity()
	if max := v.cfg.MaxLifetime; max > 0 {
		from := id.IssuedAt
		if from.IsZero() {
			from = time.Now()
		}
		if id.ExpiresAt.Sub(from) > max+v.cfg.Leeway {
			return nil, &Error{Code: CodeTokenInvalid, Cause: fmt.Errorf("token lifetime %s exceeds the maximum %s", id.ExpiresAt.Sub(from).Round(time.Second), max)}
		}
	}
	if id.UserID == "" {
		return nil, &Error{Code: CodeTokenInvalid, Cause: errors.New("token has no sub or userId")}
	}
	sum := sha256.Sum256([]byte(token))
	id.TokenSHA256 = hex.EncodeToString(sum[:])
	return id, nil
}

func (v *Verifier) parse(token string, secret []byte) (*Claims, error) {
	claims := &Claims{}
	_, err := v.parser.ParseWithClaims(token, claims, func(*jwt.Token) (any, error) { return secret, nil })
	if err != nil {
		return nil, err
	}
	return claims, nil
}

// Claims are the token claims MediaNest reads: the registered ones plus
// userId, role, roles, sessionId/sid, email and name. The registered
// claims are decoded here rather than with jwt.RegisteredClaims, whose
// dates decode through a nested json.Unmarshal each: token verification
// is on the connect path.
type Claims struct {
	Issuer    string     `json:"iss,omitempty"`
	Subject   string     `json:"sub,omitempty"`
	Audience  audience   `json:"aud,omitempty"`
	ExpiresAt *unixTime  `json:"exp,omitempty"`
	NotBefore *unixTime  `json:"nbf,omitempty"`
	IssuedAt  *unixTime  `json:"iat,omitempty"`
	ID        string     `json:"jti,omitempty"`
	UserID    string     `json:"userId,omitempty"`
	Role      stringList `json:"role,omitempty"`
	Roles     stringList `json:"roles,omitempty"`
	SID       string     `json:"sid,omitempty"`
	SessionID string     `json:"sessionId,omitempty"`
	Email     string     `json:"email,omitempty"`
	Name      string     `json:"name,omitempty"`
}

var _ jwt.Claims = (*Claims)(nil)

func (u *unixTime) numeric() *jwt.NumericDate {
	if u == nil {
		return nil
	}
	return jwt.NewNumericDate(u.time())
}

// GetExpirationTime implements jwt.Claims.
func (c *Claims) GetExpirationTime() (*jwt.NumericDate, error) { return c.ExpiresAt.numeric(), nil }

// GetIssuedAt implements jwt.Claims.
func (c *Claims) GetIssuedAt() (*jwt.NumericDate, error) { return c.IssuedAt.numeric(), nil }

// GetNotBefore implements jwt.Claims.
func (c *Claims) GetNotBefore() (*jwt.NumericDate, error) { return c.NotBefore.numeric(), nil }

// GetIssuer implements jwt.Claims.
func (c *Claims) GetIssuer() (string, error) { return c.Issuer, nil }

// GetSubject implements jwt.Claims.
func (c *Claims) GetSubject() (string, error) { return c.Subject, nil }

// GetAudience implements jwt.Claims.
func (c *Claims) GetAudience() (jwt.ClaimStrings, error) { return jwt.ClaimStrings(c.Audience), nil }

// unixTime is a NumericDate: seconds since the epoch, maybe fractional.
type unixTime float64

func (u unixTime) time() time.Time {
	sec, frac := math.Modf(float64(u))
	return time.Unix(int64(sec), int64(frac*1e9))
}

func (u *unixTime) UnmarshalJSON(b []byte) error {
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil {
		return fmt.Errorf("a date claim must be a number of seconds: %w", err)
	}
	*u = unixTime(f)
	return nil
}

func (u unixTime) MarshalJSON() ([]byte, error) {
	return strconv.AppendInt(nil, int64(u), 10), nil
}

func newUnixTime(t time.Time) *unixTime {
	u := unixTime(t.Unix())
	return &u
}

// audience reads aud as a string or an array of strings.
type audience []string

func (a *audience) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var one string
		if err := json.Unmarshal(b, &one); err != nil {
			return err
		}
		*a = audience{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return fmt.Errorf("aud must be a string or an array of strings: %w", err)
	}
	*a = many
	return nil
}

func (a audience) MarshalJSON() ([]byte, error) {
	if len(a) == 1 {
		return json.Marshal(a[0])
	}
	return json.Marshal([]string(a))
}

func (c *Claims) identity() *Identity {
	id := &Identity{
		UserID:    c.Subject,
		SessionID: c.SID,
		Email:     c.Email,
		Name:      c.Name,
		JTI:       c.ID,
	}
	if id.UserID == "" {
		id.UserID = c.UserID
	}
	if id.SessionID == "" {
		id.SessionID = c.SessionID
	}
	if c.ExpiresAt != nil {
		id.ExpiresAt = c.ExpiresAt.time()
	}
	if c.IssuedAt != nil {
		id.IssuedAt = c.IssuedAt.time()
	}
	seen := make(map[string]bool, len(c.Role)+len(c.Roles))
	for _, r := range append(append([]string(nil), c.Role...), c.Roles...) {
		r = strings.ToLower(strings.TrimSpace(r))
		if r != "" && !seen[r] {
			seen[r] = true
			id.Roles = append(id.Roles, r)
		}
	}
	return id
}

// stringList reads a JSON string or an array of strings.
type stringList []string

func (l *stringList) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*l = stringList{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return fmt.Errorf("role claim must be a string or an array of strings: %w", err)
	}
	*l = many
	return nil
}

// MintOptions describe a token to mint.
type MintOptions struct {
	UserID    string
	Roles     []string
	SessionID string
	Email     string
	Name      string
	JTI       string
	TTL       time.Duration // zero means one hour
	Issuer    string
	Audience  string
	// Now is the issue time; zero means time.Now().
	Now time.Time
}

// Mint signs a HS256 token with secret. It is meant for development, tests
// and the load tool; production tokens come from MediaNest's backend.
func Mint(secret []byte, o MintOptions) (string, error) {
	if o.UserID == "" {
		return "", errors.New("auth: mint: user id is required")
	}
	now := o.Now
	if now.IsZero() {
		now = time.Now()
	}
	ttl := o.TTL
	if ttl == 0 {
		ttl = time.Hour
	}
	c := Claims{
		Issuer:    o.Issuer,
		Subject:   o.UserID,
		Audience:  audience{o.Audience},
		ExpiresAt: newUnixTime(now.Add(ttl)),
		IssuedAt:  newUnixTime(now),
		ID:        o.JTI,
		SID:       o.SessionID,
		Email:     o.Email,
		Name:      o.Name,
	}
	if len(o.Roles) == 1 {
		c.Role = stringList{o.Roles[0]}
	} else if len(o.Roles) > 1 {
		c.Roles = o.Roles
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, &c).SignedString(secret)
	if err != nil {
		return "", fmt.Errorf("auth: sign token: %w", err)
	}
	return s, nil
}

// MarshalJSON writes one role as a plain string, the shape MediaNest's
// backend issues, and several as an array.
func (l stringList) MarshalJSON() ([]byte, error) {
	if len(l) == 1 {
		return json.Marshal(l[0])
	}
	return json.Marshal([]string(l))
}

// UnverifiedSubject returns the user a token claims to be, without checking
// its signature: attacker-controlled, for counting the users an IP fails
// to authenticate as, never for admission. It returns "" when the token
// does not parse.
func UnverifiedSubject(token string) string {
	if token == "" || len(token) > MaxTokenBytes {
		return ""
	}
	claims := &Claims{}
	if _, _, err := jwt.NewParser().ParseUnverified(token, claims); err != nil {
		return ""
	}
	sub := claims.Subject
	if sub == "" {
		sub = claims.UserID
	}
	if len(sub) > 256 {
		sub = sub[:256]
	}
	return sub
}
