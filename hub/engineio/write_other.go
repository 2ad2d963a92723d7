//go:build !unix

package engineio

import "errors"

// canWriteRaw says this platform has no non-blocking write here: every
// connection's frames are written by a goroutine of its own.
const canWriteRaw = false

func (c *Conn) tryWrite([]byte) (int, error) { return 0, errors.New("engineio: no raw writes here") }
