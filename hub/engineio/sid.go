package engineio

import (
	"crypto/rand"
	"encoding/base64"
)

// newSID returns a random 20-character URL-safe id, the shape Engine.IO
// and Socket.io ids have.
func newSID() string {
	var b [15]byte
	_, _ = rand.Read(b[:]) // never fails on supported platforms
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// NewID returns a random 20-character URL-safe id.
func NewID() string { return newSID() }
