package hub

import (
	"fmt"
	"testing"
	"time"
)

func TestIPLimiter(t *testing.T) {
	l := newIPLimiter(5)
	now := time.Now()
	for i := range 5 {
		if !l.allow("1.2.3.4", now) {
			t.Fatalf("connection %d refused", i+1)
		}
	}
	if l.allow("1.2.3.4", now) {
		t.Fatal("sixth connection in a minute allowed")
	}
	if !l.allow("5.6.7.8", now) {
		t.Fatal("another IP refused")
	}
	if !l.allow("1.2.3.4", now.Add(13*time.Second)) {
		t.Fatal("no token back after a fifth of a minute")
	}
	l.sweep(now.Add(10 * time.Minute))
	for i := range l.shards {
		if len(l.shards[i].m) != 0 {
			t.Fatal("idle buckets kept after sweep")
		}
	}
}

func BenchmarkEventLimiter(b *testing.B) {
	lim := newEventLimiter(1 << 30)
	b.ReportAllocs()
	for b.Loop() {
		lim.Allow()
	}
}

func BenchmarkIPLimiter(b *testing.B) {
	l := newIPLimiter(1 << 30)
	ips := make([]string, 1024)
	for i := range ips {
		ips[i] = fmt.Sprint("10.0.", i/256, ".", i%256)
	}
	now := time.Now()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		l.allow(ips[i&1023], now)
		i++
	}
}
