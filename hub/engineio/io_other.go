//go:build !unix

package engineio

import "errors"

// canRaw says this platform has no non-blocking reads and writes here:
// every connection's frames are written by a goroutine of its own, and its
// reader holds a buffer while it waits.
const canRaw = false

func (c *Conn) tryWrite([]byte) (int, error) { return 0, errors.New("engineio: no raw writes here") }

func (c *Conn) readInto(st *readState) (int, error) { return c.readPlain(st) }
