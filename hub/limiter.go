package hub

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// ipLimiter is a token bucket per client IP. Buckets idle for longer than
// it takes to refill are forgotten by sweep.
type ipLimiter struct {
	limit rate.Limit
	burst int
	idle  time.Duration

	shards [16]struct {
		mu sync.Mutex
		m  map[string]*ipBucket
	}
}

type ipBucket struct {
	lim  *rate.Limiter
	last time.Time
}

func newIPLimiter(perMinute int) *ipLimiter {
	l := &ipLimiter{
		limit: rate.Every(time.Minute / time.Duration(perMinute)),
		burst: perMinute,
		idle:  2 * time.Minute,
	}
	for i := range l.shards {
		l.shards[i].m = make(map[string]*ipBucket)
	}
	return l
}

func (l *ipLimiter) allow(ip string, now time.Time) bool {
	sh := &l.shards[fnv32(ip)%uint32(len(l.shards))]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	b := sh.m[ip]
	if b == nil {
		b = &ipBucket{lim: rate.NewLimiter(l.limit, l.burst)}
		sh.m[ip] = b
	}
	b.last = now
	return b.lim.AllowN(now, 1)
}

func (l *ipLimiter) sweep(now time.Time) {
	for i := range l.shards {
		sh := &l.shards[i]
		sh.mu.Lock()
		for ip, b := range sh.m {
			if now.Sub(b.last) > l.idle {
				delete(sh.m, ip)
			}
		}
		sh.mu.Unlock()
	}
}

func fnv32(s string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= 16777619
	}
	return h
}

// newEventLimiter is the per-socket limit on client events.
func newEventLimiter(perMinute int) *rate.Limiter {
	return rate.NewLimiter(rate.Every(time.Minute/time.Duration(perMinute)), perMinute)
}
