//go:build unix

package engineio

import (
	"io"

	"golang.org/x/sys/unix"
)

// canRaw says this platform has the non-blocking reads and writes below.
const canRaw = true

// tryWrite writes b without waiting: it returns how much of b the socket
// took (0 when its buffer is full).
func (c *Conn) tryWrite(b []byte) (int, error) {
	var n int
	var werr error
	err := c.raw.Write(func(fd uintptr) bool {
		for n < len(b) {
			m, err := unix.Write(int(fd), b[n:])
			if m > 0 {
				n += m
			}
			switch err {
			case nil:
				if m <= 0 {
					return true
				}
			case unix.EINTR:
			case unix.EAGAIN:
				return true
			default:
				werr = err
				return true
			}
		}
		return true // never wait: a full socket is the writer goroutine's
	})
	if err != nil {
		return n, err
	}
	return n, werr
}

// readInto waits until the socket is readable, then reads into st.buf();
// a pooled buffer taken for an attempt that found nothing to read goes
// back before waiting again, so waiting costs no buffer.
func (c *Conn) readInto(st *readState) (int, error) {
	if c.raw == nil {
		return c.readPlain(st)
	}
	if st.rawRead == nil {
		st.rawRead = func(fd uintptr) bool {
			b := st.buf()
			for {
				m, err := unix.Read(int(fd), b)
				switch err {
				case unix.EINTR:
					continue
				case unix.EAGAIN:
					st.release()
					return false
				}
				st.n, st.err = m, err
				return true
			}
		}
	}
	err := c.raw.Read(st.rawRead)
	switch {
	case err != nil:
		return 0, err
	case st.err != nil:
		return 0, st.err
	case st.n <= 0:
		return 0, io.EOF
	}
	return st.n, nil
}
