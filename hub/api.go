package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/medianest/hub/events"
	"github.com/medianest/hub/hub/auth"
)

// maxAPIBody bounds admin API request bodies.
const maxAPIBody = 1 << 20

// APIHandler serves /api/v1/: the admin and publish API. Every call needs a
// bearer JWT with role admin or service.
//
//	POST /api/v1/emit        {namespace, room, event, data | args} → 202
//	GET  /api/v1/connections → cluster-wide counts
//	POST /api/v1/disconnect  {user_id | session_id | socket_id | ip, reason} → 200
//	POST /api/v1/revocations {session_id | user_id | jti, reason} → 202 once durable
//	POST /api/v1/sessions    {session_id, user_id, expires_at, token_sha256?, ip?, user_agent?} → 202
//	DELETE /api/v1/sessions/{id} → 202 (the session ended: logout)
func (n *Node) APIHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/v1/revocations", n.apiRevoke)
	mux.HandleFunc("POST /api/v1/sessions", n.apiCreateSession)
	mux.HandleFunc("DELETE /api/v1/sessions/{id}", n.apiEndSession)
	mux.HandleFunc("POST /api/v1/emit", n.apiEmit)
	mux.HandleFunc("GET /api/v1/connections", n.apiConnections)
	mux.HandleFunc("POST /api/v1/disconnect", n.apiDisconnect)
	return n.apiAuth(mux)
}

type apiError struct {
	Error string `json:"error"`
	Code  string `json:"code"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

type ctxKey struct{}

func (n *Node) apiAuth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := r.Header.Get("Authorization")
		if len(h) < 8 || !strings.EqualFold(h[:7], "Bearer ") {
			writeJSON(w, http.StatusUnauthorized, apiError{"Authentication failed", auth.CodeTokenMissing})
			return
		}
		id, err := n.verifier.Verify(strings.TrimSpace(h[7:]))
		if err != nil {
			code := auth.CodeTokenInvalid
			var ae *auth.Error
			if errors.As(err, &ae) {
				code = ae.Code
			}
			n.metrics.authFailures.WithLabelValues(code).Inc()
			writeJSON(w, http.StatusUnauthorized, apiError{"Authentication failed", code})
			return
		}
		if n.sessions.Revoked(id, time.Now()) {
			n.metrics.authFailures.WithLabelValues(auth.CodeSessionRevoked).Inc()
			writeJSON(w, http.StatusUnauthorized, apiError{"Authentication failed", auth.CodeSessionRevoked})
			return
		}
		if !id.HasAnyRole("admin", "service") {
			n.metrics.authFailures.WithLabelValues(CodeInsufficientRole).Inc()
			writeJSON(w, http.StatusForbidden, apiError{"Required role: admin or service", CodeInsufficientRole})
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxAPIBody)
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, id)))
	})
}

func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeJSON(w, http.StatusBadRequest, apiError{"invalid JSON body: " + err.Error(), "invalid_body"})
		return false
	}
	return true
}

type emitRequest struct {
	Namespace string          `json:"namespace"`
	Room      string          `json:"room"`
	Event     string          `json:"event"`
	Data      json.RawMessage `json:"data,omitempty"`
	Args      json.RawMessage `json:"args,omitempty"`
}

func (n *Node) apiEmit(w http.ResponseWriter, r *http.Request) {
	var req emitRequest
	if !decodeBody(w, r, &req) {
		return
	}
	if req.Namespace == "" {
		req.Namespace = "/"
	}
	if req.Room == "" {
		req.Room = events.AllRoom
	}
	switch {
	case req.Event == "":
		writeJSON(w, http.StatusBadRequest, apiError{"event is required", "invalid_body"})
		return
	case n.ns[req.Namespace] == nil:
		writeJSON(w, http.StatusBadRequest, apiError{"unknown namespace " + req.Namespace, "invalid_namespace"})
		return
	case len(req.Args) > 0 && (req.Args[0] != '['):
		writeJSON(w, http.StatusBadRequest, apiError{"args must be an array", "invalid_body"})
		return
	}
	subject, err := n.subj.Emit(req.Namespace, req.Room)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, apiError{err.Error(), "invalid_body"})
		return
	}
	em := events.EmitMessage{Event: req.Event, Data: req.Data, Args: req.Args, TS: time.Now().UnixNano()}
	if err := n.nc.Publish(subject, marshal(em)); err != nil {
		n.metrics.publishErrors.WithLabelValues("emit").Inc()
		writeJSON(w, http.StatusServiceUnavailable, apiError{"bus unavailable", "unavailable"})
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]string{"subject": subject})
}

func (n *Node) apiConnections(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, n.clusterCount(r.Context()))
}

func (n *Node) apiDisconnect(w http.ResponseWriter, r *http.Request) {
	var msg events.CtlMessage
	if !decodeBody(w, r, &msg) {
		return
	}
	if !msg.HasSelector() {
		writeJSON(w, http.StatusBadRequest, apiError{"one of user_id, session_id, socket_id, ip is required", "invalid_body"})
		return
	}
	actor, _ := r.Context().Value(ctxKey{}).(*auth.Identity)
	count, nodes := n.clusterOp(r.Context(), events.CtlDisconnect, msg)
	target := msg.UserID + msg.SessionID + msg.SocketID + msg.IP
	n.audit(r.Context(), actor.UserID, "api.disconnect", target, map[string]int{"sockets": count, "nodes": nodes})
	writeJSON(w, http.StatusOK, map[string]int{"disconnected": count, "nodes": nodes})
}

// publishSessionEvent validates a session event and publishes it to the
// session stream; it returns once JetStream has stored it.
func (n *Node) publishSessionEvent(ctx context.Context, name, subject string, data any) (events.Event, int, error) {
	if n.js == nil {
		return events.Event{}, http.StatusServiceUnavailable, errors.New("JetStream is not available")
	}
	ev, err := events.New("medianest-hub/"+n.cfg.NodeID, events.DomainSession, name, subject, data)
	if err != nil {
		return ev, http.StatusInternalServerError, err
	}
	raw := marshal(ev)
	if _, err := n.validator.Validate(raw); err != nil {
		return ev, http.StatusBadRequest, err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := n.js.Publish(ctx, n.subj.Event(events.DomainSession, name), raw, jetstream.WithMsgID(ev.ID)); err != nil {
		n.metrics.publishErrors.WithLabelValues("session").Inc()
		return ev, http.StatusServiceUnavailable, fmt.Errorf("store the event: %w", err)
	}
	return ev, http.StatusAccepted, nil
}

type revocationRequest struct {
	SessionID string `json:"session_id"`
	UserID    string `json:"user_id"`
	JTI       string `json:"jti"`
	Reason    string `json:"reason"`
}

func (n *Node) apiRevoke(w http.ResponseWriter, r *http.Request) {
	var req revocationRequest
	if !decodeBody(w, r, &req) {
		return
	}
	targets := 0
	for _, v := range []string{req.SessionID, req.UserID, req.JTI} {
		if v != "" {
			targets++
		}
	}
	switch {
	case targets != 1:
		writeJSON(w, http.StatusBadRequest, apiError{"exactly one of session_id, user_id, jti is required", "invalid_body"})
		return
	case strings.TrimSpace(req.Reason) == "":
		writeJSON(w, http.StatusBadRequest, apiError{"reason is required", "invalid_body"})
		return
	}
	actor, _ := r.Context().Value(ctxKey{}).(*auth.Identity)
	data := events.SessionRevokedData{SessionID: req.SessionID, UserID: req.UserID, JTI: req.JTI, Reason: req.Reason}
	kind, value := data.Kind()
	ev, status, err := n.publishSessionEvent(r.Context(), events.SessionRevoked, kind+":"+value, data)
	if err != nil {
		writeJSON(w, status, apiError{err.Error(), codeFor(status)})
		return
	}
	n.audit(r.Context(), actor.UserID, "api.revoke", kind+":"+value, map[string]string{"event": ev.ID, "reason": req.Reason})
	writeJSON(w, http.StatusAccepted, map[string]string{"id": ev.ID, "kind": kind, "value": value, "status": "accepted"})
}

func (n *Node) apiCreateSession(w http.ResponseWriter, r *http.Request) {
	var req events.SessionCreatedData
	if !decodeBody(w, r, &req) {
		return
	}
	if req.SessionID == "" || req.UserID == "" || req.ExpiresAt.IsZero() {
		writeJSON(w, http.StatusBadRequest, apiError{"session_id, user_id and expires_at are required", "invalid_body"})
		return
	}
	ev, status, err := n.publishSessionEvent(r.Context(), events.SessionCreated, "session:"+req.SessionID, req)
	if err != nil {
		writeJSON(w, status, apiError{err.Error(), codeFor(status)})
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]string{"id": ev.ID, "status": "accepted"})
}

func (n *Node) apiEndSession(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	ev, status, err := n.publishSessionEvent(r.Context(), events.SessionEnded, "session:"+id, events.SessionEndedData{SessionID: id})
	if err != nil {
		writeJSON(w, status, apiError{err.Error(), codeFor(status)})
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]string{"id": ev.ID, "status": "accepted"})
}

func codeFor(status int) string {
	switch status {
	case http.StatusBadRequest:
		return "invalid_body"
	case http.StatusServiceUnavailable:
		return "unavailable"
	}
	return "internal"
}

// Authorized wraps next with the admin API's check: a bearer JWT with role
// admin or service, not revoked.
func (n *Node) Authorized(next http.Handler) http.Handler { return n.apiAuth(next) }
