// Package cluster is the scatter-gather that hub nodes and workers use to
// act on every hub node at once: a request on a hub.ctl subject whose
// replies are collected until every live node has answered or a timeout
// passes, and the table of live nodes kept from their heartbeats.
package cluster

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/medianest/hub/events"
)

// Peers tracks the live hub nodes from their hub.ctl.node heartbeats.
// It is safe for concurrent use.
type Peers struct {
	self  string // this process's node id, or "" for a process that is no node
	ttl   time.Duration
	mu    sync.Mutex
	nodes map[string]time.Time
}

// NewPeers returns a table that forgets a node not heard from within ttl.
func NewPeers(self string, ttl time.Duration) *Peers {
	return &Peers{self: self, ttl: ttl, nodes: make(map[string]time.Time)}
}

// Observe records a heartbeat; it reports whether the sender asked every
// node to announce itself.
func (p *Peers) Observe(info events.NodeInfo) (hello bool) {
	if info.Node == "" || info.Node == p.self {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if info.Leaving {
		delete(p.nodes, info.Node)
		return false
	}
	p.nodes[info.Node] = time.Now()
	return info.Hello
}

// Count is the number of live nodes, this one included when it is a node.
func (p *Peers) Count() int {
	cutoff := time.Now().Add(-p.ttl)
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for id, seen := range p.nodes {
		if seen.Before(cutoff) {
			delete(p.nodes, id)
			continue
		}
		n++
	}
	if p.self != "" {
		n++
	}
	return n
}

// Watch subscribes the table to heartbeats. The returned subscription
// ends it.
func (p *Peers) Watch(nc *nats.Conn, subj events.Subjects) (*nats.Subscription, error) {
	return nc.Subscribe(subj.Ctl(events.CtlNode), func(m *nats.Msg) {
		var info events.NodeInfo
		if json.Unmarshal(m.Data, &info) == nil {
			p.Observe(info)
		}
	})
}

// Gather publishes data on subject as a request and returns the replies of
// distinct nodes until want nodes answered, timeout passed or ctx is done.
func Gather(ctx context.Context, nc *nats.Conn, subject string, data []byte, want int, timeout time.Duration) ([]events.CtlReply, error) {
	inbox := nc.NewRespInbox()
	ch := make(chan *nats.Msg, 64)
	sub, err := nc.ChanSubscribe(inbox, ch)
	if err != nil {
		return nil, err
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := nc.PublishRequest(subject, inbox, data); err != nil {
		return nil, err
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	var replies []events.CtlReply
	seen := map[string]bool{}
	for want <= 0 || len(replies) < want {
		select {
		case m := <-ch:
			var r events.CtlReply
			if json.Unmarshal(m.Data, &r) == nil && r.Node != "" && !seen[r.Node] {
				seen[r.Node] = true
				replies = append(replies, r)
			}
		case <-timer.C:
			return replies, nil
		case <-ctx.Done():
			return replies, nil
		}
	}
	return replies, nil
}
