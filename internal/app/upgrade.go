package app

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// upgradeListener takes WebSocket upgrade requests for one path prefix
// off the listener before net/http sees them, and serves them through the
// same handler chain with a pooled reader and a response writer of its
// own; every other connection goes to net/http as it came. A connection
// that net/http upgrades keeps its per-connection reader and writer
// (8 KiB) and pays for a request context and a response it will not
// use: at thousands of connections a second that was a third of the
// bytes allocated per connection and a tenth of the hub's CPU.
type upgradeListener struct {
	net.Listener
	prefix      string
	h           http.Handler
	headTimeout time.Duration
	log         zerolog.Logger

	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
	err   error // why accepting stopped; read after done is closed

	// Connections still reading their head, closed by Close; serving
	// counts the goroutines of new connections, which Wait waits for.
	mu      sync.Mutex
	reading map[net.Conn]struct{}
	serving sync.WaitGroup
}

// headReaders are the readers of request heads; a head that does not
// fit one goes to net/http, which allows larger.
var headReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, headBuffer) }}

// headBuffer is the largest request head served here: socket.io-client's
// upgrade requests are 300–800 bytes, a browser's with cookies a few
// KiB.
const headBuffer = 4 << 10

func newUpgradeListener(ln net.Listener, prefix string, h http.Handler, headTimeout time.Duration, log zerolog.Logger) *upgradeListener {
	l := &upgradeListener{Listener: ln, prefix: prefix, h: h, headTimeout: headTimeout, log: log,
		conns: make(chan net.Conn), done: make(chan struct{}), reading: make(map[net.Conn]struct{})}
	go l.acceptLoop()
	return l
}

// Accept hands net/http the connections that are not upgrades here.
func (l *upgradeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, l.err
	}
}

// Close stops accepting and closes the connections still reading their
// head (net/http's Shutdown closes its idle ones too); connections
// already upgraded live on, and the node's Shutdown closes them.
func (l *upgradeListener) Close() error {
	err := l.Listener.Close()
	l.stop(net.ErrClosed)
	l.mu.Lock()
	for nc := range l.reading {
		nc.Close()
	}
	l.mu.Unlock()
	return err
}

// Wait waits, after Close, for the goroutines of the connections accepted
// before it: an upgrade whose head was read by then has been handed to the
// node (so the node's Shutdown sees it) or refused.
func (l *upgradeListener) Wait(ctx context.Context) error {
	done := make(chan struct{})
	go func() { l.serving.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// track records nc as reading its head, or reports false once the
// listener is closed.
func (l *upgradeListener) track(nc net.Conn, on bool) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !on {
		delete(l.reading, nc)
		return true
	}
	select {
	case <-l.done:
		return false
	default:
	}
	l.reading[nc] = struct{}{}
	return true
}

func (l *upgradeListener) stop(err error) {
	l.once.Do(func() {
		l.err = err
		close(l.done)
	})
}

func (l *upgradeListener) acceptLoop() {
	var backoff time.Duration
	for {
		nc, err := l.Listener.Accept()
		if err != nil {
			var te interface{ Temporary() bool }
			if !errors.As(err, &te) || !te.Temporary() {
				l.stop(err) // closed, or broken: Serve returns it
				return
			}
			// Out of descriptors, say: wait and go on, as net/http does.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			l.log.Warn().Err(err).Dur("retry_in", backoff).Msg("accept failed")
			select {
			case <-time.After(backoff):
				continue
			case <-l.done:
				return
			}
		}
		backoff = 0
		l.serving.Add(1)
		go l.serve(nc)
	}
}

// serve reads the request head of a new connection and serves it here
// when it is an upgrade under the prefix, or hands the connection on.
func (l *upgradeListener) serve(nc net.Conn) {
	defer l.serving.Done()
	if !l.track(nc, true) {
		nc.Close()
		return
	}
	br := headReaders.Get().(*bufio.Reader)
	br.Reset(nc)
	_ = nc.SetReadDeadline(time.Now().Add(l.headTimeout))
	head, err := peekHead(br, "GET "+l.prefix)
	l.track(nc, false)
	select {
	case <-l.done:
		// Shutting down: nothing new is served.
		nc.Close()
		headReaders.Put(br)
		return
	default:
	}
	if err != nil {
		// The peer went away, or sent nothing whole in time: what net/http
		// does after its own timeout.
		nc.Close()
		headReaders.Put(br)
		return
	}
	if head == nil || !isUpgrade(head, l.prefix) {
		// net/http reads it from the start, the bytes peeked included.
		_ = nc.SetReadDeadline(time.Time{})
		select {
		case l.conns <- &peekedConn{Conn: nc, br: br}:
		case <-l.done:
			nc.Close()
		}
		return
	}
	req, err := http.ReadRequest(br)
	if err == nil {
		err = checkRequest(req)
	}
	if err != nil {
		writeRaw(nc, http.StatusBadRequest, nil, []byte("bad request\n"))
		nc.Close()
		headReaders.Put(br)
		return
	}
	req.RemoteAddr = nc.RemoteAddr().String()
	w := &upgradeWriter{nc: nc, br: br, header: make(http.Header), status: http.StatusOK}
	l.h.ServeHTTP(w, req)
	if !w.hijacked {
		// Refused: the status, headers and body the handler gave, and
		// the connection ends.
		writeRaw(nc, w.status, w.header, w.body.Bytes())
		nc.Close()
	}
	br.Reset(nil)
	headReaders.Put(br)
}

// peekHead returns the request head in br's buffer without consuming
// it: everything up to the blank line (CRLF or bare LF endings, as net/http
// reads them). It returns nil, no error, as soon as the head is not one to
// serve here: its first line does not start with want, or it is larger
// than the buffer.
func peekHead(br *bufio.Reader, want string) ([]byte, error) {
	from, lineSeen := 0, false
	for {
		n := br.Buffered() + 1
		if n > br.Size() {
			return nil, nil
		}
		if _, err := br.Peek(n); err != nil {
			return nil, err
		}
		b, _ := br.Peek(br.Buffered())
		if !lineSeen {
			if !bytes.HasPrefix(b, []byte(want)[:min(len(b), len(want))]) {
				return nil, nil // net/http's from its first bytes
			}
			if i := bytes.IndexByte(b, '\n'); i < 0 {
				continue
			}
			lineSeen = true
		}
		if end := headEnd(b, from); end > 0 {
			return b[:end], nil
		}
		from = max(len(b)-3, 0) // the blank line may straddle reads
	}
}

// headEnd returns the length of the head in b — up to and including its
// blank line — looking from offset from on, or 0 if b holds no blank line.
func headEnd(b []byte, from int) int {
	for i := from; i < len(b); i++ {
		if b[i] != '\n' {
			continue
		}
		switch {
		case i+1 < len(b) && b[i+1] == '\n':
			return i + 2
		case i+2 < len(b) && b[i+1] == '\r' && b[i+2] == '\n':
			return i + 3
		}
	}
	return 0
}

// checkRequest refuses what net/http's server refuses in a request head
// beyond its syntax: HTTP/1.1 without exactly one Host, and header values
// with control characters.
func checkRequest(r *http.Request) error {
	if r.Host == "" || len(r.Header.Values("Host")) > 1 || !validHost(r.Host) {
		return errors.New("missing, repeated or malformed Host")
	}
	for _, vs := range r.Header {
		for _, v := range vs {
			for i := 0; i < len(v); i++ {
				if c := v[i]; (c < ' ' && c != '\t') || c == 0x7f {
					return errors.New("control character in a header value")
				}
			}
		}
	}
	return nil
}

// validHost reports whether h holds only the bytes a Host header may
// (RFC 3986's reg-name, IP literals and a port), as net/http checks.
func validHost(h string) bool {
	for i := 0; i < len(h); i++ {
		c := h[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!$%&'()*+,-./:;=?@[]_~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// isUpgrade reports whether head is a GET under prefix asking for a
// WebSocket upgrade. The request is parsed in full afterwards; this only
// routes it.
func isUpgrade(head []byte, prefix string) bool {
	line, rest, _ := bytes.Cut(head, []byte("\r\n"))
	if !bytes.HasPrefix(line, []byte("GET "+prefix)) || !bytes.HasSuffix(line, []byte(" HTTP/1.1")) {
		return false
	}
	for len(rest) > 0 {
		line, rest, _ = bytes.Cut(rest, []byte("\r\n"))
		name, value, ok := bytes.Cut(line, []byte(":"))
		if ok && bytes.EqualFold(bytes.TrimSpace(name), []byte("Upgrade")) {
			return bytes.EqualFold(bytes.TrimSpace(value), []byte("websocket"))
		}
	}
	return false
}

// peekedConn is a connection whose first bytes wait in br.
type peekedConn struct {
	net.Conn
	br *bufio.Reader
}

func (c *peekedConn) Read(p []byte) (int, error) {
	if c.br != nil {
		if c.br.Buffered() > 0 {
			return c.br.Read(p)
		}
		c.br.Reset(nil)
		headReaders.Put(c.br)
		c.br = nil
	}
	return c.Conn.Read(p)
}

// CloseWrite lets net/http end its half of the connection gracefully.
func (c *peekedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// upgradeWriter is the response writer of a request served here: it
// lets the handler hijack the connection, and keeps a refusal to write
// it whole.
type upgradeWriter struct {
	nc       net.Conn
	br       *bufio.Reader
	header   http.Header
	status   int
	wrote    bool
	body     bytes.Buffer
	hijacked bool
}

func (w *upgradeWriter) Header() http.Header { return w.header }

func (w *upgradeWriter) WriteHeader(code int) {
	if !w.wrote {
		w.status, w.wrote = code, true
	}
}

func (w *upgradeWriter) Write(b []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	if w.hijacked {
		return 0, http.ErrHijacked
	}
	return w.body.Write(b)
}

func (w *upgradeWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if w.hijacked {
		return nil, nil, http.ErrHijacked
	}
	w.hijacked = true
	// The hijacker gets a reader of its own, holding the bytes that came
	// after the head (Buffered tells how many), so the pooled one goes
	// back to the pool when serve returns, whatever the hijacker keeps.
	var r *bufio.Reader
	if n := w.br.Buffered(); n == 0 {
		r = bufio.NewReaderSize(w.nc, 16)
	} else {
		early, _ := w.br.Peek(n)
		r = bufio.NewReaderSize(io.MultiReader(bytes.NewReader(bytes.Clone(early)), w.nc), n)
		_, _ = r.Peek(n) // from the copy alone: one read of it gives all n
	}
	return w.nc, bufio.NewReadWriter(r, bufio.NewWriterSize(w.nc, 16)), nil
}

// writeRaw writes a whole HTTP/1.1 response that ends the connection.
func writeRaw(nc net.Conn, status int, h http.Header, body []byte) {
	var b bytes.Buffer
	fmt.Fprintf(&b, "HTTP/1.1 %d %s\r\n", status, http.StatusText(status))
	if h == nil {
		h = http.Header{"Content-Type": {"text/plain; charset=utf-8"}}
	}
	h.Del("Content-Length")
	h.Del("Connection")
	_ = h.Write(&b)
	b.WriteString("Content-Length: " + strconv.Itoa(len(body)) + "\r\nConnection: close\r\n\r\n")
	b.Write(body)
	_ = nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, _ = nc.Write(b.Bytes())
}
