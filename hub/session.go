package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/medianest/hub/events"
	"github.com/medianest/hub/hub/auth"
	"github.com/medianest/hub/hub/sessions"
	"github.com/medianest/hub/hub/socketio"
)

// authenticate verifies a token and checks its session.
func (n *Node) authenticate(token string) (*authState, error) {
	id, err := n.verifier.Verify(token)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	sid, err := n.sessions.Check(ctx, id, time.Now())
	if err != nil {
		return nil, err
	}
	return &authState{id: id, sessionID: sid}, nil
}

// errorCode is the client-facing code of an authentication error.
func errorCode(err error) string {
	var ae *auth.Error
	if errors.As(err, &ae) {
		return ae.Code
	}
	return auth.CodeTokenInvalid
}

// joinIdentityRooms puts a socket in the rooms its credentials name:
// user:<id>, role:<role> for each role, and session:<sid>.
func joinIdentityRooms(s *socketio.Socket, a *authState) {
	s.Join("user:" + a.id.UserID)
	for _, r := range a.id.Roles {
		s.Join("role:" + r)
	}
	if a.sessionID != "" {
		s.Join("session:" + a.sessionID)
	}
}

func leaveIdentityRooms(s *socketio.Socket, a *authState) {
	for _, r := range a.id.Roles {
		s.Leave("role:" + r)
	}
	if a.sessionID != "" {
		s.Leave("session:" + a.sessionID)
	}
}

// scheduleExpiry arms the socket's token expiry: auth:expiring before exp,
// and a disconnect ExpiryGrace after it unless auth:refresh came first.
func (n *Node) scheduleExpiry(s *socketio.Socket, st *socketState) {
	a := st.auth.Load()
	if a == nil || a.id.ExpiresAt.IsZero() {
		return
	}
	st.expiryMu.Lock()
	defer st.expiryMu.Unlock()
	if st.expiry != nil {
		st.expiry.Stop()
	}
	st.warned = false
	d := time.Until(a.id.ExpiresAt.Add(-n.cfg.ExpiryWarning))
	st.expiry = time.AfterFunc(max(d, 0), func() { n.expiryStep(s, st, a) })
}

func (st *socketState) stopExpiry() {
	st.expiryMu.Lock()
	defer st.expiryMu.Unlock()
	if st.expiry != nil {
		st.expiry.Stop()
		st.expiry = nil
	}
}

func (n *Node) expiryStep(s *socketio.Socket, st *socketState, a *authState) {
	if st.auth.Load() != a || !s.Connected() {
		return // refreshed or gone meanwhile
	}
	deadline := a.id.ExpiresAt.Add(n.cfg.ExpiryGrace)
	if time.Now().Before(deadline) {
		st.expiryMu.Lock()
		warn := !st.warned
		st.warned = true
		if st.expiry != nil {
			st.expiry.Reset(time.Until(deadline))
		}
		st.expiryMu.Unlock()
		if warn {
			s.Emit("auth:expiring", map[string]any{"expires_at": a.id.ExpiresAt.UTC().Format(time.RFC3339)})
		}
		return
	}
	n.metrics.expired.Inc()
	n.kick(s, "token expired", auth.CodeTokenExpired)
}

// kick tells a socket why it is being disconnected, then disconnects it.
func (n *Node) kick(s *socketio.Socket, reason, code string) {
	s.Emit("server:disconnect", map[string]string{"reason": reason, "code": code})
	s.Disconnect()
}

// onRefresh replaces a socket's token with a newer one for the same user.
func (n *Node) onRefresh(s *socketio.Socket, args []json.RawMessage, ack socketio.Ack) {
	st := stateOf(s)
	fail := func(code, message string) {
		n.metrics.refreshes.WithLabelValues("refused").Inc()
		res := map[string]any{"ok": false, "code": code, "message": message}
		if ack != nil {
			ack(marshal(res))
			return
		}
		s.Emit("error", res)
	}
	cur := st.auth.Load()
	if cur == nil {
		fail("not_authenticated", "User not authenticated")
		return
	}
	token, ok := stringField(args, "token")
	if !ok || token == "" {
		fail(auth.CodeTokenMissing, "auth:refresh needs {token}")
		return
	}
	next, err := n.authenticate(token)
	if err != nil {
		fail(errorCode(err), "Authentication failed")
		return
	}
	if next.id.UserID != cur.id.UserID {
		fail(auth.CodeTokenInvalid, "The new token is for another user")
		return
	}
	if p := st.policy; !p.Anonymous() && !next.id.HasAnyRole(p.Roles...) {
		fail(CodeInsufficientRole, p.RequiredRoleMessage())
		return
	}
	if !st.auth.CompareAndSwap(cur, next) {
		fail("conflict", "Another refresh is in progress")
		return
	}
	leaveIdentityRooms(s, cur)
	joinIdentityRooms(s, next)
	n.scheduleExpiry(s, st)
	if !n.sessions.Valid(next.id, next.sessionID, time.Now()) {
		// Revoked while the refresh was being checked.
		fail(auth.CodeSessionRevoked, "Authentication failed")
		n.kick(s, "session revoked", auth.CodeSessionRevoked)
		return
	}
	n.metrics.refreshes.WithLabelValues("ok").Inc()
	res := map[string]any{"ok": true, "expires_at": next.id.ExpiresAt.UTC().Format(time.RFC3339)}
	if ack != nil {
		ack(marshal(res))
	} else {
		s.Emit("auth:refreshed", res)
	}
}

// closedRecord remembers what a session event closed on this node, so
// that the stream consumer and a worker's control request, whichever comes
// first, close once and report the same count.
type closedRecord struct {
	done  chan struct{}
	count int
	at    time.Time
}

type closedLog struct {
	mu sync.Mutex
	m  map[string]*closedRecord
}

// applySessionEvent feeds a session event into the cache and closes the
// sockets it ends or revokes. It returns how many it closed.
func (n *Node) applySessionEvent(ev events.Event) (int, error) {
	target, err := n.sessions.Apply(ev)
	if err != nil || target == nil {
		return 0, err
	}
	n.closed.mu.Lock()
	rec, seen := n.closed.m[ev.ID]
	if !seen {
		rec = &closedRecord{done: make(chan struct{}), at: time.Now()}
		n.closed.m[ev.ID] = rec
	}
	n.closed.mu.Unlock()
	if seen {
		<-rec.done
		return rec.count, nil
	}
	rec.count = n.closeTarget(*target)
	close(rec.done)
	if rec.count > 0 {
		n.log.Info().Str("event", ev.ID).Str("session", target.SessionID).Str("user", target.UserID).
			Str("jti", target.JTI).Int("sockets", rec.count).Str("reason", target.Reason).Msg("sockets closed by a session event")
	}
	return rec.count, nil
}

func (n *Node) sweepClosed(now time.Time) {
	n.closed.mu.Lock()
	defer n.closed.mu.Unlock()
	for id, rec := range n.closed.m {
		if now.Sub(rec.at) > 10*time.Minute {
			delete(n.closed.m, id)
		}
	}
}

// closeTarget disconnects this node's sockets that a session change selects.
func (n *Node) closeTarget(t sessions.Target) int {
	count := 0
	for _, nsp := range n.ns {
		var candidates []*socketio.Socket
		switch {
		case t.SessionID != "":
			candidates = nsp.RoomSockets("session:" + t.SessionID)
		case t.UserID != "":
			candidates = nsp.RoomSockets("user:" + t.UserID)
		default:
			nsp.Each(func(s *socketio.Socket) bool { candidates = append(candidates, s); return true })
		}
		for _, s := range candidates {
			st := stateOf(s)
			if st == nil {
				continue
			}
			a := st.auth.Load()
			if a == nil || !t.Matches(a.id, a.sessionID) {
				continue
			}
			n.kick(s, t.Reason, t.Code)
			count++
		}
	}
	n.metrics.revokedSockets.Add(float64(count))
	return count
}

// consumeSessions follows the session stream from its start with an
// ordered consumer: it rebuilds the cache and then applies live changes.
// It returns once the replay has caught up (or after a bound).
func (n *Node) consumeSessions(ctx context.Context) error {
	if n.js == nil {
		return nil
	}
	stream := events.StreamName(n.cfg.SubjectPrefix, events.DomainSession)
	info, err := n.js.Stream(ctx, stream)
	if err != nil {
		return fmt.Errorf("hub: session stream %s: %w", stream, err)
	}
	last := info.CachedInfo().State.LastSeq
	if info.CachedInfo().State.Msgs == 0 {
		last = 0 // every event aged out: nothing to replay
	}
	cons, err := n.js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{n.subj.Events(events.DomainSession)},
		DeliverPolicy:  jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return fmt.Errorf("hub: session consumer: %w", err)
	}
	caught := make(chan struct{})
	var once sync.Once
	if last == 0 {
		once.Do(func() { close(caught) })
	}
	n.sessions.SetSync(func(ctx context.Context) error { return n.syncSessions(ctx, stream) })
	cc, err := cons.Consume(func(m jetstream.Msg) {
		var ev events.Event
		if _, verr := n.validator.Validate(m.Data()); verr != nil {
			n.metrics.sessionEvents.WithLabelValues("invalid").Inc()
		} else if err := json.Unmarshal(m.Data(), &ev); err == nil {
			if _, err := n.applySessionEvent(ev); err != nil {
				n.metrics.sessionEvents.WithLabelValues("invalid").Inc()
			} else {
				n.metrics.sessionEvents.WithLabelValues("applied").Inc()
			}
		}
		if md, err := m.Metadata(); err == nil {
			n.appliedSeq.Store(md.Sequence.Stream)
			if md.Sequence.Stream >= last {
				once.Do(func() { close(caught) })
			}
		}
	}, jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		n.log.Warn().Err(err).Msg("session stream consumer")
	}))
	if err != nil {
		return fmt.Errorf("hub: consume session stream: %w", err)
	}
	n.sessionConsumer = cc
	select {
	case <-caught:
	case <-time.After(15 * time.Second):
		n.log.Warn().Uint64("last_seq", last).Msg("session stream replay still running; strict checks fall back to the database")
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

// syncSessions waits, within ctx and at most 500ms, until the node has
// applied every session event stored so far.
func (n *Node) syncSessions(ctx context.Context, stream string) error {
	ctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	s, err := n.js.Stream(ctx, stream)
	if err != nil {
		return err
	}
	state := s.CachedInfo().State
	if state.Msgs == 0 {
		return nil
	}
	for n.appliedSeq.Load() < state.LastSeq {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Millisecond):
		}
	}
	return nil
}

// onCtlRevoke applies a session event sent by a worker and replies with
// what it closed here.
func (n *Node) onCtlRevoke(data []byte) events.CtlReply {
	r := events.CtlReply{Node: n.cfg.NodeID}
	if _, err := n.validator.Validate(data); err != nil {
		r.Error = err.Error()
		return r
	}
	var ev events.Event
	if err := json.Unmarshal(data, &ev); err != nil {
		r.Error = err.Error()
		return r
	}
	count, err := n.applySessionEvent(ev)
	if err != nil {
		r.Error = err.Error()
	}
	r.Count = count
	return r
}
