//go:build !linux

package loadtest

import (
	"net"
	"syscall"
)

// Poller reads its clients' connections, one goroutine per connection
// (the epoll loops are Linux only).
type Poller struct{}

// NewPoller returns a poller; n is ignored off Linux.
func NewPoller(int) (*Poller, error) { return &Poller{}, nil }

// Add reads c's connection until it ends: pings are answered, disconnects
// recorded, events given to OnEvent.
func (p *Poller) Add(c *Client) error {
	go c.run()
	return nil
}

// Close does nothing: clients are closed one by one.
func (p *Poller) Close() {}

func (c *Client) run() {
	defer c.ended()
	buf := make([]byte, 4096)
	for {
		if len(c.pending) > len(buf)/2 {
			buf = make([]byte, 2*len(c.pending))
		}
		m := copy(buf, c.pending)
		n, err := c.conn.Read(buf[m:])
		if n > 0 {
			rest, perr := c.consume(buf[:m+n])
			if perr != nil {
				c.Close()
				return
			}
			c.pending = append(c.pending[:0], rest...)
		}
		if err != nil {
			return
		}
	}
}

// write writes b whole; the caller holds c.wmu.
func (c *Client) write(b []byte) error {
	if c.closed {
		return net.ErrClosed
	}
	_, err := c.conn.Write(b)
	return err
}

// Close closes the connection.
func (c *Client) Close() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	c.ended()
	return c.conn.Close()
}

// childAttr: children end when their stdin closes.
func childAttr() *syscall.SysProcAttr { return nil }

// bindNoPort is Linux only.
func bindNoPort(_, _ string, _ syscall.RawConn) error { return nil }
