//go:build unix

package engineio

import "golang.org/x/sys/unix"

// canWriteRaw says this platform has the non-blocking write of tryWrite.
const canWriteRaw = true

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
