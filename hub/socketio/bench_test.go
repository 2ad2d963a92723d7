package socketio

import (
	"encoding/json"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/rs/zerolog"

	"github.com/medianest/hub/hub/engineio"
	"github.com/medianest/hub/hub/protocol"
)

// benchRoom builds a namespace with n sockets in room "r" whose frames are
// counted instead of written.
func benchRoom(b testing.TB, n int) (*Namespace, *atomic.Int64) {
	b.Helper()
	srv := NewServer(engineio.Config{}, zerolog.Nop())
	ns := srv.Of("/media")
	var frames atomic.Int64
	for range n {
		ec := engineio.NewDetachedConn(func([]byte) bool { frames.Add(1); return true })
		c := &Conn{eio: ec, srv: srv, sockets: map[string]*Socket{}}
		s := &Socket{id: engineio.NewID(), ns: ns, conn: c}
		c.sockets[ns.name] = s
		ns.add(s)
		s.Join("r")
	}
	return ns, &frames
}

// TestBroadcastAllocatesPerBroadcast: the broadcast path allocates per
// broadcast, never per delivery — a room of 1,000 costs what a room of
// one does.
func TestBroadcastAllocatesPerBroadcast(t *testing.T) {
	frame := protocol.AppendEvent(nil, "/media", protocol.NoID, "media-status", json.RawMessage(`{"state":"playing"}`))
	allocs := func(n int) float64 {
		ns, frames := benchRoom(t, n)
		ns.BroadcastFrame("r", frame) // warm: shard slices grown once
		a := testing.AllocsPerRun(100, func() { ns.BroadcastFrame("r", frame) })
		if got := frames.Load(); got != int64(102*n) {
			t.Fatalf("%d sockets: %d frames delivered, want %d", n, got, 102*n)
		}
		return a
	}
	one, thousand := allocs(1), allocs(1000)
	if thousand > one {
		t.Fatalf("a broadcast to 1,000 sockets allocates %.1f times, to one %.1f: allocation per delivery", thousand, one)
	}
}

// BenchmarkBroadcast is one media-status style broadcast to a room:
// encode once, queue the same frame for every member.
func BenchmarkBroadcast(b *testing.B) {
	for _, n := range []int{1, 100, 10_000} {
		b.Run(fmt.Sprint(n, "_sockets"), func(b *testing.B) {
			ns, frames := benchRoom(b, n)
			data := json.RawMessage(`{"roomId":"film-9","state":"playing","position":12.5,"userId":"42","timestamp":"2026-12-03T10:00:00.000Z"}`)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				frame := protocol.AppendEvent(nil, "/media", protocol.NoID, "media-status", data)
				ns.BroadcastFrame("r", frame)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(frames.Load()), "ns/delivery")
		})
	}
}
