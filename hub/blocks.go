package hub

import (
	"encoding/json"
	"sync"
	"time"

	"github.com/medianest/hub/events"
	"github.com/medianest/hub/hub/socketio"
)

// Refusal of a blocked IP.
const (
	MsgAccessDenied = "Access denied"
	CodeIPBlocked   = "ip_blocked"
)

// blockList is the IPs this node refuses, each until a time.
type blockList struct {
	mu sync.RWMutex
	m  map[string]time.Time
}

func (b *blockList) add(ip string, until time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if until.After(b.m[ip]) {
		b.m[ip] = until
	}
}

func (b *blockList) remove(ip string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	_, ok := b.m[ip]
	delete(b.m, ip)
	return ok
}

func (b *blockList) blocked(ip string, now time.Time) bool {
	b.mu.RLock()
	defer b.mu.RUnlock()
	until, ok := b.m[ip]
	return ok && now.Before(until)
}

// replace makes the list exactly the given blocks (a resync).
func (b *blockList) replace(blocks []events.BlockMessage) {
	m := make(map[string]time.Time, len(blocks))
	for _, x := range blocks {
		if x.Until.After(m[x.IP]) {
			m[x.IP] = x.Until
		}
	}
	b.mu.Lock()
	b.m = m
	b.mu.Unlock()
}

func (b *blockList) sweep(now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for ip, until := range b.m {
		if !now.Before(until) {
			delete(b.m, ip)
		}
	}
}

// onCtlBlock blocks or unblocks an IP on this node; a block also closes the
// IP's sockets. It returns how many were closed.
func (n *Node) onCtlBlock(op string, data []byte) events.CtlReply {
	r := events.CtlReply{Node: n.cfg.NodeID}
	var b events.BlockMessage
	if err := json.Unmarshal(data, &b); err != nil || b.IP == "" {
		r.Error = "a block needs {ip}"
		return r
	}
	if op == events.CtlUnblock {
		if n.blocks.remove(b.IP) {
			r.Count = 1
			n.log.Info().Str("ip", b.IP).Msg("IP block lifted")
		}
		return r
	}
	if b.Until.IsZero() || !b.Until.After(time.Now()) {
		r.Error = "a block needs an until in the future"
		return r
	}
	n.blocks.add(b.IP, b.Until)
	r.Count = n.eachMatch(events.CtlMessage{IP: b.IP}, func(s *socketio.Socket) {
		n.kick(s, "access denied", CodeIPBlocked)
		s.Conn().Close("ip blocked") // the whole connection, not only the socket
	})
	n.log.Warn().Str("ip", b.IP).Time("until", b.Until).Str("reason", b.Reason).Int("sockets", r.Count).Msg("IP blocked")
	return r
}
