package app

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
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
		conns: make(chan net.Conn), done: make(chan struct{})}
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

// Close stops accepting; connections already upgraded live on.
func (l *upgradeListener) Close() error {
	err := l.Listener.Close()
	l.stop(net.ErrClosed)
	return err
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
			if errors.Is(err, net.ErrClosed) {
				l.stop(err)
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
		go l.serve(nc)
	}
}

// serve reads the request head of a new connection and serves it here
// when it is an upgrade under the prefix, or hands the connection on.
func (l *upgradeListener) serve(nc net.Conn) {
	br := headReaders.Get().(*bufio.Reader)
	br.Reset(nc)
	_ = nc.SetReadDeadline(time.Now().Add(l.headTimeout))
	head, fits, err := peekHead(br)
	if err != nil {
		// Nothing whole within the timeout, or the peer went away: what
		// net/http would do after its own timeout.
		nc.Close()
		headReaders.Put(br)
		return
	}
	if !fits || !isUpgrade(head, l.prefix) {
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
// it: everything up to the blank line. fits is false when the head is
// larger than the buffer.
func peekHead(br *bufio.Reader) (head []byte, fits bool, err error) {
	for {
		n := br.Buffered() + 1
		if n > br.Size() {
			return nil, false, nil
		}
		if _, err := br.Peek(n); err != nil {
			return nil, false, err
		}
		b, _ := br.Peek(br.Buffered())
		if i := bytes.Index(b, []byte("\r\n\r\n")); i >= 0 {
			return b[:i+4], true, nil
		}
	}
}

// checkRequest refuses what net/http's server refuses in a request head
// beyond its syntax: HTTP/1.1 without exactly one Host, and header values
// with control characters.
func checkRequest(r *http.Request) error {
	if r.Host == "" || len(r.Header.Values("Host")) > 1 {
		return errors.New("missing or repeated Host")
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
