package engineio

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/rs/zerolog"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// recorder is a Handler that remembers what happened.
type recorder struct {
	mu     sync.Mutex
	conns  []*Conn
	msgs   []string
	closed chan string
}

func newRecorder() *recorder { return &recorder{closed: make(chan string, 16)} }

func (r *recorder) Open(c *Conn, _ *http.Request) {
	r.mu.Lock()
	r.conns = append(r.conns, c)
	r.mu.Unlock()
}

func (r *recorder) Message(c *Conn, data []byte) {
	r.mu.Lock()
	r.msgs = append(r.msgs, string(data))
	r.mu.Unlock()
	c.Send(append([]byte("4"), data...)) // echo
}

func (r *recorder) Binary(c *Conn, data []byte) { c.SendBinary(data) }

func (r *recorder) Close(c *Conn, reason string) {
	select {
	case r.closed <- reason:
	default: // a test with many connections reads none of theirs
	}
}

func (r *recorder) conn(t *testing.T) *Conn {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		r.mu.Lock()
		if len(r.conns) > 0 {
			c := r.conns[len(r.conns)-1]
			r.mu.Unlock()
			return c
		}
		r.mu.Unlock()
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatal("no connection opened")
	return nil
}

// nth waits for the connection opened i-th, from 0.
func (r *recorder) nth(t *testing.T, i int) *Conn {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		r.mu.Lock()
		if len(r.conns) > i {
			c := r.conns[i]
			r.mu.Unlock()
			return c
		}
		r.mu.Unlock()
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("connection %d never opened", i)
	return nil
}

func serve(t *testing.T, cfg Config) (*Server, *recorder, string) {
	t.Helper()
	return serveTuned(t, cfg, nil)
}

// serveTuned is serve with tune applied to the server before it serves.
func serveTuned(t *testing.T, cfg Config, tune func(*Server)) (*Server, *recorder, string) {
	t.Helper()
	rec := newRecorder()
	s := NewServer(cfg, rec, zerolog.Nop())
	if tune != nil {
		tune(s) // before the server's goroutines exist
	}
	hs := httptest.NewServer(s)
	t.Cleanup(func() {
		done := make(chan struct{})
		close(done)
		s.Shutdown(done)
		hs.Close()
	})
	return s, rec, "ws" + strings.TrimPrefix(hs.URL, "http") + "/?EIO=4&transport=websocket"
}

func dial(t *testing.T, url string) *websocket.Conn {
	t.Helper()
	ws, _, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.Close() })
	_, open, err := ws.ReadMessage()
	if err != nil || open[0] != '0' {
		t.Fatalf("open packet %q, %v", open, err)
	}
	return ws
}

func TestHandshakeEchoAndHeartbeat(t *testing.T) {
	_, rec, url := serve(t, Config{PingInterval: 50 * time.Millisecond, PingTimeout: 200 * time.Millisecond})
	ws := dial(t, url)
	if err := ws.WriteMessage(websocket.TextMessage, []byte("4hello")); err != nil {
		t.Fatal(err)
	}
	pings := 0
	for pings < 3 {
		_, msg, err := ws.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		switch string(msg) {
		case "2":
			pings++
			_ = ws.WriteMessage(websocket.TextMessage, []byte("3"))
		case "4hello":
		default:
			t.Fatalf("unexpected frame %q", msg)
		}
	}
	_ = ws.WriteMessage(websocket.BinaryMessage, []byte{1, 2})
	for {
		typ, msg, err := ws.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		if typ == websocket.BinaryMessage {
			if string(msg) != "\x01\x02" {
				t.Fatalf("binary echo %v", msg)
			}
			break
		}
		if string(msg) == "2" {
			_ = ws.WriteMessage(websocket.TextMessage, []byte("3"))
		}
	}
	if rec.conn(t).ID() == "" {
		t.Fatal("empty sid")
	}
}

func TestPingTimeoutCloses(t *testing.T) {
	s, rec, url := serve(t, Config{PingInterval: 50 * time.Millisecond, PingTimeout: 50 * time.Millisecond})
	ws := dial(t, url)
	go func() { // read but never answer pings
		for {
			if _, _, err := ws.ReadMessage(); err != nil {
				return
			}
		}
	}()
	select {
	case reason := <-rec.closed:
		if reason != ReasonPingTimeout {
			t.Fatalf("reason = %q", reason)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("connection not closed after a missed pong")
	}
	if s.Stats().PingTimeouts.Load() != 1 {
		t.Fatalf("ping timeouts = %d", s.Stats().PingTimeouts.Load())
	}
}

func TestSlowConsumerIsCut(t *testing.T) {
	s, rec, url := serve(t, Config{SendQueue: 4})
	_ = dial(t, url) // never reads again
	c := rec.conn(t)
	frame := append([]byte("4"), make([]byte, 64<<10)...)
	deadline := time.Now().Add(10 * time.Second)
	for c.Send(frame) {
		if time.Now().After(deadline) {
			t.Fatal("queue never overflowed")
		}
	}
	select {
	case reason := <-rec.closed:
		if reason != ReasonSlowConsumer {
			t.Fatalf("reason = %q", reason)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("slow consumer not closed")
	}
	if s.Stats().SlowConsumers.Load() != 1 {
		t.Fatalf("slow consumers = %d", s.Stats().SlowConsumers.Load())
	}
}

func TestOversizedFrameCloses(t *testing.T) {
	s, rec, url := serve(t, Config{MaxPayload: 1024})
	ws := dial(t, url)
	_ = ws.WriteMessage(websocket.TextMessage, append([]byte("4"), make([]byte, 2048)...))
	select {
	case reason := <-rec.closed:
		if reason != ReasonPayloadTooBig {
			t.Fatalf("reason = %q", reason)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("not closed")
	}
	if s.Stats().Oversized.Load() != 1 {
		t.Fatal("oversized not counted")
	}
}

func TestBadFrameCloses(t *testing.T) {
	s, rec, url := serve(t, Config{})
	ws := dial(t, url)
	_ = ws.WriteMessage(websocket.TextMessage, []byte("x"))
	select {
	case reason := <-rec.closed:
		if reason != ReasonParseError {
			t.Fatalf("reason = %q", reason)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("not closed")
	}
	if s.Stats().BadFrames.Load() != 1 {
		t.Fatal("bad frame not counted")
	}
}

func TestShutdownClosesWithGoingAway(t *testing.T) {
	rec := newRecorder()
	s := NewServer(Config{}, rec, zerolog.Nop())
	hs := httptest.NewServer(s)
	defer hs.Close()
	ws := dial(t, "ws"+strings.TrimPrefix(hs.URL, "http")+"/?EIO=4&transport=websocket")
	rec.conn(t)
	done := make(chan struct{})
	go func() { s.Shutdown(make(chan struct{})); close(done) }()
	_, _, err := ws.ReadMessage()
	if !websocket.IsCloseError(err, websocket.CloseGoingAway) {
		t.Fatalf("read after shutdown: %v", err)
	}
	ws.Close()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Shutdown did not return")
	}
	resp, err := hs.Client().Get(hs.URL + "/?EIO=4&transport=websocket")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("after shutdown: %d", resp.StatusCode)
	}
}

// TestWriterFrames sends payloads around every header-length boundary of
// RFC 6455, from many goroutines at once, and checks that a standard
// client reads each intact and, per sender, in order.
func TestWriterFrames(t *testing.T) {
	_, rec, url := serve(t, Config{SendQueue: 4096, MaxPayload: 1 << 20})
	ws := dial(t, url)
	c := rec.conn(t)
	sizes := []int{0, 1, 124, 125, 126, 127, 1000, 65535, 65536, 65537, 300_000}
	const senders = 8
	var wg sync.WaitGroup
	for g := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i, n := range sizes {
				// "4" (message), sender, index, then filler.
				frame := append([]byte(fmt.Sprintf("4%d:%02d:", g, i)), bytes.Repeat([]byte{'a' + byte(i)}, n)...)
				if !c.Send(frame) {
					t.Errorf("send %d/%d refused", g, i)
				}
			}
		}()
	}
	wg.Wait()
	next := make([]int, senders)
	_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	for range senders * len(sizes) {
		typ, msg, err := ws.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		var g, i int
		if typ != websocket.TextMessage || msg[0] != '4' {
			t.Fatalf("frame type %d, %.20q", typ, msg)
		}
		if _, err := fmt.Sscanf(string(msg[1:7]), "%d:%02d:", &g, &i); err != nil {
			t.Fatalf("frame %.20q: %v", msg, err)
		}
		if i != next[g] {
			t.Fatalf("sender %d: frame %d arrived where %d was due", g, i, next[g])
		}
		next[g]++
		body := msg[len(fmt.Sprintf("4%d:%02d:", g, i)):]
		if len(body) != sizes[i] || !bytes.Equal(body, bytes.Repeat([]byte{'a' + byte(i)}, sizes[i])) {
			t.Fatalf("sender %d frame %d: %d bytes, want %d intact", g, i, len(body), sizes[i])
		}
	}
}

func TestAppendHeader(t *testing.T) {
	tests := []struct {
		op   byte
		n    int
		want []byte
	}{
		{opText, 0, []byte{0x81, 0}},
		{opText, 125, []byte{0x81, 125}},
		{opBinary, 126, []byte{0x82, 126, 0, 126}},
		{opText, 65535, []byte{0x81, 126, 0xff, 0xff}},
		{opClose, 65536, []byte{0x88, 127, 0, 0, 0, 0, 0, 1, 0, 0}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.op, "/", tt.n), func(t *testing.T) {
			got := appendHeader(nil, tt.op, tt.n)
			if !bytes.Equal(got, tt.want) || headerLen(tt.n) != len(tt.want) {
				t.Fatalf("header %x (len %d), want %x", got, headerLen(tt.n), tt.want)
			}
		})
	}
}

// TestStalledPeerGetsEverything fills a connection's socket while its
// peer does not read — in bursts smaller than a loop's turn, so the write
// loop meets the full socket mid-turn and hands the rest to the
// connection's own writer. While it is stalled another connection is
// served; then the peer reads, and every frame arrives intact and in order.
func TestStalledPeerGetsEverything(t *testing.T) {
	_, rec, url := serve(t, Config{SendQueue: 1 << 16})
	stalled := dial(t, url)
	c := rec.conn(t)
	other := dial(t, url)
	var oc *Conn
	for oc == nil || oc == c {
		oc = rec.conn(t)
	}
	const frames = 40_000 // ≈ 40 MB of 1 KiB frames: more than the socket buffers hold
	body := bytes.Repeat([]byte{'x'}, 1000)
	read := make(chan error, 1)
	release := make(chan struct{})
	go func(release <-chan struct{}) {
		<-release
		_ = stalled.SetReadDeadline(time.Now().Add(30 * time.Second))
		for i := range frames {
			_, msg, err := stalled.ReadMessage()
			if err != nil {
				read <- fmt.Errorf("frame %d: %w", i, err)
				return
			}
			want := fmt.Sprintf("4%06d", i)
			if len(msg) != len(want)+len(body) || string(msg[:len(want)]) != want {
				read <- fmt.Errorf("frame %d: got %.10q (%d bytes)", i, msg, len(msg))
				return
			}
		}
		read <- nil
	}(release)
	queued := func() int {
		c.wmu.Lock()
		defer c.wmu.Unlock()
		return len(c.queue)
	}
	full := false
	for i := range frames {
		if !c.Send(append([]byte(fmt.Sprintf("4%06d", i)), body...)) {
			t.Fatalf("send %d refused", i)
		}
		if full || i%50 != 49 {
			continue
		}
		// Let a writer take the burst before the next one, until the
		// socket is full and the queue stays.
		for wait := 0; queued() > 0; wait++ {
			if wait == 50 {
				full = true
				break
			}
			time.Sleep(100 * time.Microsecond)
		}
		if full {
			// The other connection is not held up by the stalled one.
			if !oc.Send([]byte("4other")) {
				t.Fatal("send to the other connection refused")
			}
			_ = other.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, msg, err := other.ReadMessage(); err != nil || string(msg) != "4other" {
				t.Fatalf("other connection: %q, %v", msg, err)
			}
			close(release)
		}
	}
	if !full {
		t.Fatal("the socket never filled")
	}
	if err := <-read; err != nil {
		t.Fatal(err)
	}
}

// serveOneLoop is serve with every connection on one write loop, so a
// test can fill a round with busyRound connections on any machine.
func serveOneLoop(t *testing.T, cfg Config) (*Server, *recorder, string) {
	t.Helper()
	return serveTuned(t, cfg, func(s *Server) { s.loops = s.loops[:1] })
}

type pauseSeen struct {
	d     time.Duration
	woken bool
}

// watchPauses reports the loop's pauses on a channel.
func watchPauses(w *writeLoop) <-chan pauseSeen {
	ch := make(chan pauseSeen, 256)
	w.observe = func(d time.Duration, woken bool) { ch <- pauseSeen{d, woken} }
	return ch
}

// loopRound has the loop write frame to each of conns in one round: the
// loop is held as if running while the frames are queued, then started,
// so its first round takes them all. It returns once every client has
// read the frame.
func loopRound(t *testing.T, loop *writeLoop, clients []*websocket.Conn, conns []*Conn, frame string) {
	t.Helper()
	loop.mu.Lock()
	loop.running = true
	loop.mu.Unlock()
	for _, c := range conns {
		c.Send([]byte(frame))
	}
	go loop.run()
	for i, ws := range clients {
		_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, msg, err := ws.ReadMessage(); err != nil || string(msg) != frame {
			t.Fatalf("client %d: %q, %v; want %q", i, msg, err, frame)
		}
	}
}

// busyLoopRound opens busyRound connections (the first opened is index
// first in rec) and has the loop write to all of them twice, in two
// rounds: the first, to connections it has not written to before (a burst
// of new connections), must not pause; the second, to the same ones again
// (a room fed at a steady rate), is busy, and the loop pauses after it.
func busyLoopRound(t *testing.T, s *Server, rec *recorder, url string, first int, pauses <-chan pauseSeen) ([]*websocket.Conn, []*Conn) {
	t.Helper()
	loop := s.loops[0]
	var (
		clients []*websocket.Conn
		conns   []*Conn
	)
	for i := range busyRound {
		clients = append(clients, dial(t, url))
		conns = append(conns, rec.nth(t, first+i))
	}
	loopRound(t, loop, clients, conns, "4first")
	waitLoopIdle(t, loop)
	select {
	case p := <-pauses:
		t.Fatalf("a round of connections new to the loop paused it %v", p.d)
	default:
	}
	loopRound(t, loop, clients, conns, "4second")
	return clients, conns
}

// waitLoopIdle waits for the loop's goroutine to end with nothing queued.
func waitLoopIdle(t *testing.T, loop *writeLoop) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		loop.mu.Lock()
		running := loop.running
		loop.mu.Unlock()
		if !running {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the write loop is still running with nothing queued")
		}
	}
}

// TestWriteDelayOnlyWhenBusy: a loop that wrote to a few connections, or
// to many it had not written to a moment before, writes the next frames
// at once; one that wrote to busyRound connections again lets frames
// gather for at most the write delay, and every frame still arrives, in
// order.
func TestWriteDelayOnlyWhenBusy(t *testing.T) {
	const delay = 2 * time.Second // its window, two delays, outlasts a slow machine's rounds
	s, rec, url := serveOneLoop(t, Config{WriteDelay: delay})
	pauses := watchPauses(s.loops[0])

	quiet := dial(t, url)
	qc := rec.nth(t, 0)
	for i := range 5 {
		want := fmt.Sprintf("4quiet%d", i)
		qc.Send([]byte(want))
		_ = quiet.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, msg, err := quiet.ReadMessage(); err != nil || string(msg) != want {
			t.Fatalf("quiet frame %d: %q, %v", i, msg, err)
		}
	}
	select {
	case p := <-pauses:
		t.Fatalf("one connection: the loop paused %v", p.d)
	default:
	}

	clients, conns := busyLoopRound(t, s, rec, url, 1, pauses)
	select {
	case p := <-pauses:
		if p.d <= 0 || p.d > delay || p.woken {
			t.Fatalf("after a busy round the loop paused %v (woken %v), want (0, %v] by its timer", p.d, p.woken, delay)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the loop never paused after a busy round")
	}
	for _, c := range conns {
		c.Send([]byte("4third"))
	}
	for i, ws := range clients {
		_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, msg, err := ws.ReadMessage(); err != nil || string(msg) != "4third" {
			t.Fatalf("client %d: %q, %v; want 4third", i, msg, err)
		}
	}
	waitLoopIdle(t, s.loops[0])
}

// TestWriteDelayWakesForAFillingQueue: while its loop gathers frames, a
// connection whose queue reaches half its bound is written at once, so a
// client that reads fast is never cut as a slow consumer for the delay.
func TestWriteDelayWakesForAFillingQueue(t *testing.T) {
	const queue = 16
	// A pause this long would outlast the test: only a wake ends it.
	s, rec, url := serveOneLoop(t, Config{WriteDelay: time.Hour, SendQueue: queue})
	pauses := watchPauses(s.loops[0])
	clients, conns := busyLoopRound(t, s, rec, url, 0, pauses)
	for i := range queue / 2 {
		if !conns[0].Send([]byte(fmt.Sprintf("4fast%d", i))) {
			t.Fatalf("send %d refused", i)
		}
	}
	_ = clients[0].SetReadDeadline(time.Now().Add(10 * time.Second))
	for i := range queue / 2 {
		want := fmt.Sprintf("4fast%d", i)
		if _, msg, err := clients[0].ReadMessage(); err != nil || string(msg) != want {
			t.Fatalf("frame %d: %q, %v; want %q", i, msg, err, want)
		}
	}
	select {
	case p := <-pauses:
		if !p.woken {
			t.Fatalf("the pause after the busy round ended by its timer (%v), not by the filling queue", p.d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no pause seen")
	}
	if got := s.Stats().SlowConsumers.Load(); got != 0 {
		t.Fatalf("%d slow consumers", got)
	}
	waitLoopIdle(t, s.loops[0])
}

// TestConnOutlivesItsWriteDeadline: a connection whose frames once went
// through its own writer (a turn over maxLoopWrite) keeps working after
// that write's deadline has passed.
func TestConnOutlivesItsWriteDeadline(t *testing.T) {
	const timeout = 100 * time.Millisecond
	_, rec, url := serve(t, Config{WriteTimeout: timeout})
	ws := dial(t, url)
	c := rec.conn(t)
	big := append([]byte("4"), bytes.Repeat([]byte("x"), maxLoopWrite+1000)...)
	c.Send(big)
	_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, msg, err := ws.ReadMessage(); err != nil || len(msg) != len(big) {
		t.Fatalf("large frame: %d bytes, %v", len(msg), err)
	}
	time.Sleep(3 * timeout) // the large write's deadline is long past
	c.Send([]byte("4small"))
	if _, msg, err := ws.ReadMessage(); err != nil || string(msg) != "4small" {
		t.Fatalf("after the deadline: %q, %v", msg, err)
	}
}
