package hub

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/medianest/hub/events"
	"github.com/medianest/hub/hub/auth"
	"github.com/medianest/hub/hub/engineio"
	"github.com/medianest/hub/hub/socketio"
)

// Connect refusal messages and codes of DESIGN §3.
const (
	MsgAuthFailed       = "Authentication failed"
	MsgRateLimited      = "Rate limit exceeded"
	MsgOriginNotAllowed = "Origin not allowed"

	CodeInsufficientRole = "insufficient_role"
	CodeRateLimited      = "rate_limited"
	CodeOriginNotAllowed = "origin_not_allowed"
)

// connInfo is what the node keeps of a connection's upgrade request.
type connInfo struct {
	ip       string
	originOK bool
	limited  bool
	blocked  bool
	tokens   tokenSources
}

// socketState is the node's state for one socket.
type socketState struct {
	auth    atomic.Pointer[authState] // nil for an anonymous socket on an open namespace
	ip      string
	limiter *rate.Limiter
	refused atomic.Int32 // consecutive rate-limited events
	policy  *Policy

	expiryMu sync.Mutex
	expiry   *time.Timer
	warned   bool
}

// authState is a socket's current credentials; auth:refresh replaces it.
type authState struct {
	id        *auth.Identity
	sessionID string // the session the token belongs to, when known
}

// identity returns the socket's identity, or nil for an anonymous socket.
func (st *socketState) identity() *auth.Identity {
	if a := st.auth.Load(); a != nil {
		return a.id
	}
	return nil
}

// sessionID returns the socket's session id, or "".
func (st *socketState) sessionID() string {
	if a := st.auth.Load(); a != nil {
		return a.sessionID
	}
	return ""
}

func stateOf(s *socketio.Socket) *socketState {
	st, _ := s.Data.(*socketState)
	return st
}

func (n *Node) onOpen(c *socketio.Conn, r *http.Request) {
	ci := &connInfo{
		ip:       clientIP(r, n.cfg.TrustedProxies),
		originOK: n.origins.allow(r),
		tokens:   readTokenSources(r),
	}
	now := time.Now()
	ci.blocked = n.blocks.blocked(ci.ip, now)
	if ci.originOK && !ci.blocked {
		ci.limited = !n.connRate.allow(ci.ip, now)
	}
	if ci.limited {
		n.metrics.rateLimited.WithLabelValues("connect").Inc()
		n.log.Info().Str("ip", ci.ip).Msg("connection over the per-IP rate")
		n.sec.emit(events.SecRateLimited, "ip:"+ci.ip, events.SecurityData{IP: ci.ip, Limit: "connect"})
	}
	if !ci.originOK {
		origin := r.Header.Get("Origin")
		if len(origin) > 1024 {
			origin = origin[:1024]
		}
		n.log.Info().Str("ip", ci.ip).Str("origin", origin).Msg("origin not allowed")
		n.sec.emit(events.SecOriginRejected, "ip:"+ci.ip, events.SecurityData{IP: ci.ip, Origin: origin})
	}
	if ci.blocked || ci.limited || !ci.originOK {
		// Refused at the first CONNECT; do not let it idle until then.
		c.SetConnectTimeout(5 * time.Second)
	}
	c.Data = ci
}

// authFailed counts, logs and reports a failed authentication. claimed is
// the unverified user the token names, if any.
func (n *Node) authFailed(ip, ns, code, claimed string, err error) {
	n.metrics.authFailures.WithLabelValues(code).Inc()
	if e := n.log.Info(); e.Enabled() {
		e.Str("ip", ip).Str("ns", ns).Str("code", code).AnErr("cause", err).Msg("authentication failed")
	}
	n.sec.emit(events.SecAuthFailed, "ip:"+ip, events.SecurityData{IP: ip, Namespace: ns, Code: code, UserID: claimed})
}

func refusal(msg, code string, closeConn bool, extra ...string) *socketio.ConnectError {
	data := map[string]any{"code": code}
	for i := 0; i+1 < len(extra); i += 2 {
		data[extra[i]] = extra[i+1]
	}
	return &socketio.ConnectError{Message: msg, Data: data, CloseConn: closeConn}
}

// tokenFromAuth reads {"token": "..."} from a CONNECT payload.
func tokenFromAuth(raw json.RawMessage) string {
	if len(raw) == 0 {
		return ""
	}
	var a struct {
		Token *string `json:"token"`
	}
	err := json.Unmarshal(raw, &a)
	if te := (*json.UnmarshalTypeError)(nil); errors.As(err, &te) && te.Field == "token" {
		return "\x00invalid" // present but not a string: refused as invalid
	}
	if err != nil || a.Token == nil {
		return ""
	}
	tok := *a.Token
	if len(tok) > 7 && strings.EqualFold(tok[:7], "Bearer ") {
		tok = strings.TrimSpace(tok[7:])
	}
	return tok
}

// middleware authenticates and authorises a CONNECT to a namespace.
func (n *Node) middleware(p *Policy) func(*socketio.Socket, json.RawMessage) error {
	return func(s *socketio.Socket, raw json.RawMessage) error {
		ci, _ := s.Conn().Data.(*connInfo)
		if ci == nil {
			return errors.New("connection without info")
		}
		if ci.blocked || n.blocks.blocked(ci.ip, time.Now()) {
			n.metrics.authFailures.WithLabelValues(CodeIPBlocked).Inc()
			return refusal(MsgAccessDenied, CodeIPBlocked, true)
		}
		if !ci.originOK {
			n.metrics.authFailures.WithLabelValues(CodeOriginNotAllowed).Inc()
			return refusal(MsgOriginNotAllowed, CodeOriginNotAllowed, true)
		}
		if ci.limited {
			return refusal(MsgRateLimited, CodeRateLimited, true)
		}
		token := tokenFromAuth(raw)
		for _, alt := range []string{ci.tokens.bearer, ci.tokens.cookie, ci.tokens.query} {
			if token != "" {
				break
			}
			token = alt
		}
		st := &socketState{ip: ci.ip, limiter: newEventLimiter(n.cfg.EventsPerMinute), policy: p}
		if token == "" && !p.Anonymous() {
			n.authFailed(ci.ip, p.Namespace, auth.CodeTokenMissing, "", nil)
			return refusal(MsgAuthFailed, auth.CodeTokenMissing, false)
		}
		if token != "" {
			as, err := n.authenticate(token)
			switch {
			case err == nil:
				st.auth.Store(as)
			default:
				code := errorCode(err)
				if p.Anonymous() {
					// An invalid token is ignored here (a stale cookie, say):
					// not a failed authentication.
					n.log.Debug().Str("ip", ci.ip).Str("code", code).Msg("ignoring an invalid token on an open namespace")
					break
				}
				n.authFailed(ci.ip, p.Namespace, code, auth.UnverifiedSubject(token), err)
				return refusal(MsgAuthFailed, code, false)
			}
		}
		id := st.identity()
		if !p.Anonymous() && !id.HasAnyRole(p.Roles...) {
			n.metrics.authFailures.WithLabelValues(CodeInsufficientRole).Inc()
			n.log.Info().Str("ip", ci.ip).Str("ns", p.Namespace).Str("user", id.UserID).Strs("roles", id.Roles).Msg("access denied")
			n.sec.emit(events.SecAccessDenied, "user:"+id.UserID, events.SecurityData{
				IP: ci.ip, Namespace: p.Namespace, UserID: id.UserID, RequiredRoles: p.Roles,
			})
			return &socketio.ConnectError{Message: p.RequiredRoleMessage(), Data: map[string]any{
				"code": CodeInsufficientRole, "required_roles": p.Roles,
			}}
		}
		if a := st.auth.Load(); a != nil {
			n.sec.emit(events.SecAuthenticated, "user:"+a.id.UserID, events.SecurityData{
				IP: ci.ip, Namespace: p.Namespace, UserID: a.id.UserID, SessionID: a.sessionID, JTI: a.id.JTI,
			})
		}
		s.Data = st
		if a := st.auth.Load(); a != nil {
			joinIdentityRooms(s, a)
		}
		return nil
	}
}

// guard applies the per-socket event rate. A socket that keeps sending
// after being refused a whole limit's worth of events is disconnected.
func (n *Node) guard(s *socketio.Socket, event string) json.RawMessage {
	st := stateOf(s)
	if st == nil {
		return rateLimitedAck
	}
	n.nsm[s.Namespace().Name()].eventsIn.Inc()
	if st.limiter.Allow() {
		st.refused.Store(0)
		return nil
	}
	n.metrics.rateLimited.WithLabelValues("events").Inc()
	refused := st.refused.Add(1)
	if refused == 1 || refused%10 == 0 { // a flood is reported, not every frame of it
		data := events.SecurityData{IP: st.ip, Limit: "events"}
		if id := st.identity(); id != nil {
			data.UserID = id.UserID
		}
		n.sec.emit(events.SecRateLimited, "ip:"+st.ip, data)
	}
	s.Emit("error", rateLimitedAck)
	if int(refused) >= n.cfg.EventsPerMinute {
		n.log.Warn().Str("ip", st.ip).Str("socket", s.ID()).Str("event", event).Msg("disconnecting a flooding socket")
		n.kick(s, "rate limit exceeded", CodeRateLimited)
	}
	return rateLimitedAck
}

// rateLimitedAck is the error event and ack payload of a refused event.
var rateLimitedAck = json.RawMessage(`{"message":"Rate limit exceeded","code":"rate_limited"}`)

func (n *Node) setupNamespace(nsp *socketio.Namespace, p Policy) {
	pol := p
	nsp.Middleware = n.middleware(&pol)
	nsp.OnConnect = func(s *socketio.Socket) {
		n.nsm[pol.Namespace].sockets.Inc()
		st := stateOf(s)
		var id *auth.Identity
		if st != nil {
			id = st.identity()
		}
		if id != nil {
			n.trackUser(id.UserID, 1)
			n.scheduleExpiry(s, st)
			// A revocation applied while this socket was being admitted
			// may have missed it: look again now that it is reachable.
			if !n.sessions.Valid(id, st.sessionID(), time.Now()) {
				n.kick(s, "session revoked", auth.CodeSessionRevoked)
				return
			}
		}
		if pol.Has(FeatureWelcome) && id != nil {
			s.Emit("welcome", map[string]any{
				"message":    "Connected to " + pol.Namespace,
				"user":       userJSON(id),
				"serverTime": serverTime(),
			})
		}
		if pol.Has(FeatureSystem) {
			s.Join(roomAlerts)
		}
	}
	nsp.OnDisconnect = func(s *socketio.Socket, reason string) {
		n.nsm[pol.Namespace].sockets.Dec()
		if st := stateOf(s); st != nil {
			st.stopExpiry()
			if id := st.identity(); id != nil {
				n.trackUser(id.UserID, -1)
			}
		}
	}
	nsp.Fallback = n.forward
	nsp.On("auth:refresh", n.onRefresh)
	if pol.Has(FeatureBase) {
		nsp.On("ping", n.onPing)
		nsp.On("echo", n.onEcho)
		nsp.On("user-info", n.onUserInfo)
	}
	if pol.Namespace == "/" {
		// The media routes push to "/", where MediaNest's client listens.
		nsp.On("subscribe:status", n.onSubscribeStatus)
		nsp.On("unsubscribe:status", n.onUnsubscribeStatus)
		nsp.On("subscribe:request", n.onSubscribeRequest)
	}
	if pol.Has(FeatureMedia) {
		nsp.On("join-media-room", n.onJoinMediaRoom)
		nsp.On("leave-media-room", n.onLeaveMediaRoom)
		nsp.On("media-status", n.onMediaStatus)
	}
	if pol.Has(FeatureAdmin) {
		nsp.On("admin:users:connected", n.onUsersConnected)
		nsp.On("admin:user:disconnect", n.onUserDisconnect)
	}
	if pol.Has(FeatureSystem) {
		nsp.On("system-health", n.onSystemHealth)
		nsp.On("subscribe-logs", n.roomToggle(roomLogs, true))
		nsp.On("unsubscribe-logs", n.roomToggle(roomLogs, false))
		nsp.On("subscribe-alerts", n.roomToggle(roomAlerts, true))
		nsp.On("unsubscribe-alerts", n.roomToggle(roomAlerts, false))
	}
}

func userJSON(id *auth.Identity) map[string]any {
	return map[string]any{"id": id.UserID, "email": id.Email, "name": id.Name, "role": id.Role(), "roles": id.Roles}
}

// serverTime is the ISO 8601 time in UTC with milliseconds, as JavaScript's
// Date.toISOString prints it.
func serverTime() string { return time.Now().UTC().Format("2006-01-02T15:04:05.000Z") }

// onClose reports connections the transport closed for bad input.
func (n *Node) onClose(c *socketio.Conn, reason string) {
	ci, _ := c.Data.(*connInfo)
	if ci == nil {
		return
	}
	switch reason {
	case engineio.ReasonParseError, engineio.ReasonPayloadTooBig:
		n.sec.emit(events.SecBadInput, "ip:"+ci.ip, events.SecurityData{IP: ci.ip, Reason: reason})
	}
}
