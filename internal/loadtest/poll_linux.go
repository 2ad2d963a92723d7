//go:build linux

package loadtest

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Poller reads its clients' connections from epoll loops: one goroutine
// per loop instead of one per connection, and one read(2) for every frame
// a connection has waiting. Only a loop closes a polled descriptor, so a
// descriptor number is never reused under a writer.
type Poller struct {
	loops []*pollLoop
	next  atomic.Uint32
	stop  atomic.Bool
	wg    sync.WaitGroup
}

type pollLoop struct {
	epfd  int
	mu    sync.Mutex
	conns map[int32]*Client
}

// pollReadBuffer is each loop's read buffer: a connection's waiting
// frames are read in one call.
const pollReadBuffer = 256 << 10

// pollGather is how long a loop that found less than a full set of ready
// connections waits before it looks again: at most that much added to a
// measured latency, for one wake-up per interval instead of one per frame.
const pollGather = time.Millisecond

// NewPoller starts n epoll loops (at least one).
func NewPoller(n int) (*Poller, error) {
	p := &Poller{}
	for range max(n, 1) {
		epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
		if err != nil {
			p.Close()
			return nil, fmt.Errorf("epoll: %w", err)
		}
		l := &pollLoop{epfd: epfd, conns: make(map[int32]*Client)}
		p.loops = append(p.loops, l)
		p.wg.Add(1)
		go func() { defer p.wg.Done(); l.run(&p.stop) }()
	}
	return p, nil
}

// Add hands c's connection to the poller, which reads it until it ends:
// pings are answered, disconnects recorded, events given to OnEvent.
func (p *Poller) Add(c *Client) error {
	// What arrived with the handshake is handled first, on the caller's
	// goroutine, while nothing else reads the connection.
	rest, err := c.consume(c.pending)
	if err != nil {
		c.Close()
		return err
	}
	c.pending = slices.Clone(rest)

	c.wmu.Lock()
	if c.closed || c.conn == nil {
		c.wmu.Unlock()
		return net.ErrClosed
	}
	sc, ok := c.conn.(syscall.Conn)
	if !ok {
		c.wmu.Unlock()
		return errors.New("poller: connection has no descriptor")
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		c.wmu.Unlock()
		return fmt.Errorf("poller: %w", err)
	}
	fd, derr := -1, error(nil)
	if err := raw.Control(func(s uintptr) { fd, derr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		derr = err
	}
	if derr != nil {
		c.wmu.Unlock()
		return fmt.Errorf("poller: dup: %w", derr)
	}
	// The duplicate keeps the socket open; the runtime's poller forgets
	// the original.
	_ = c.conn.Close()
	c.conn, c.fd = nil, fd
	c.wmu.Unlock()
	// Non-blocking already: O_NONBLOCK, set by the runtime, is a flag of
	// the open file, which the duplicate shares.

	l := p.loops[int(p.next.Add(1))%len(p.loops)]
	l.mu.Lock()
	l.conns[int32(fd)] = c
	l.mu.Unlock()
	// Edge-triggered: a socket read to the end is not polled again by
	// the next epoll_wait (level-triggered, every reported socket was),
	// and new data reports it afresh.
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLET, Fd: int32(fd)}
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		l.finish(c)
		return fmt.Errorf("poller: epoll_ctl: %w", err)
	}
	return nil
}

// Close stops the loops and closes every connection still polled.
func (p *Poller) Close() {
	p.stop.Store(true)
	p.wg.Wait()
	for _, l := range p.loops {
		l.mu.Lock()
		cs := make([]*Client, 0, len(l.conns))
		for _, c := range l.conns {
			cs = append(cs, c)
		}
		l.mu.Unlock()
		for _, c := range cs {
			l.finish(c)
		}
		unix.Close(l.epfd)
	}
}

func (l *pollLoop) run(stop *atomic.Bool) {
	events := make([]unix.EpollEvent, 512)
	buf := make([]byte, pollReadBuffer)
	for !stop.Load() {
		n, err := unix.EpollWait(l.epfd, events, 100)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return
		}
		for _, ev := range events[:n] {
			l.mu.Lock()
			c := l.conns[ev.Fd]
			l.mu.Unlock()
			if c != nil {
				for l.read(c, buf) {
					// The read filled the buffer: more may wait, and no new
					// edge reports it.
				}
			}
		}
		if n > 0 && n < len(events) {
			// Let frames gather for a moment instead of waking for each:
			// a writer to a socket whose reader is asleep in epoll_wait
			// pays for the wake-up, on the hub's side of the figure.
			time.Sleep(pollGather)
		}
	}
}

// read reads what c has waiting and handles every complete frame; it
// reports whether the read filled the buffer it was given, in which case
// more may be waiting (a shorter read took everything the socket held).
func (l *pollLoop) read(c *Client, buf []byte) (more bool) {
	var data []byte
	var n, room int
	var err error
	if len(c.pending) > len(buf)/2 {
		// A large frame in progress gathers in its own buffer.
		c.pending = slices.Grow(c.pending, 64<<10)
		room = cap(c.pending) - len(c.pending)
		n, err = unix.Read(c.fd, c.pending[len(c.pending):cap(c.pending)])
		if n > 0 {
			data = c.pending[:len(c.pending)+n]
		}
	} else {
		m := copy(buf, c.pending)
		room = len(buf) - m
		n, err = unix.Read(c.fd, buf[m:])
		if n > 0 {
			data = buf[:m+n]
		}
	}
	if n <= 0 {
		if errors.Is(err, unix.EAGAIN) {
			return false
		}
		if errors.Is(err, unix.EINTR) {
			return true
		}
		l.finish(c)
		return false
	}
	rest, err := c.consume(data)
	if err != nil {
		l.finish(c)
		return false
	}
	c.pending = append(c.pending[:0], rest...)
	return n == room
}

// finish closes a polled connection and marks it ended.
func (l *pollLoop) finish(c *Client) {
	c.wmu.Lock()
	fd := c.fd
	if fd >= 0 {
		l.mu.Lock()
		delete(l.conns, int32(fd))
		l.mu.Unlock()
		_ = unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, fd, nil)
		unix.Close(fd)
		c.fd = -1
	}
	c.closed = true
	c.wmu.Unlock()
	c.ended()
}

// write writes b whole; the caller holds c.wmu.
func (c *Client) write(b []byte) error {
	if c.closed {
		return net.ErrClosed
	}
	if c.fd < 0 {
		_, err := c.conn.Write(b)
		return err
	}
	for len(b) > 0 {
		n, err := unix.Write(c.fd, b)
		if n > 0 {
			b = b[n:]
		}
		switch {
		case err == nil, errors.Is(err, unix.EINTR):
		case errors.Is(err, unix.EAGAIN):
			pfd := []unix.PollFd{{Fd: int32(c.fd), Events: unix.POLLOUT}}
			if _, err := unix.Poll(pfd, int(handshakeTimeout.Milliseconds())); err != nil && !errors.Is(err, unix.EINTR) {
				return fmt.Errorf("write: poll: %w", err)
			}
		default:
			return fmt.Errorf("write: %w", err)
		}
	}
	return nil
}

// Close closes the connection. A polled connection is shut down and its
// loop closes the descriptor.
func (c *Client) Close() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closed {
		return nil
	}
	if c.fd >= 0 {
		return unix.Shutdown(c.fd, unix.SHUT_RDWR)
	}
	c.closed = true
	c.ended()
	return c.conn.Close()
}

// childAttr makes a child load-tool process die with its parent.
func childAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} }

// bindNoPort lets connect(2) choose the source port of a socket bound to
// a source address (IP_BIND_ADDRESS_NO_PORT). bind(2) alone picks a port
// unused by every destination, scanning past sockets in TIME_WAIT: after a
// run or two that search cost the tool milliseconds per connection.
func bindNoPort(_, _ string, c syscall.RawConn) error {
	var serr error
	if err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
	}); err != nil {
		return err
	}
	return serr
}
