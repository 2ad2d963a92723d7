// Package protocol encodes and decodes the two layers of the Socket.io v4
// wire format: Engine.IO protocol v4 packets and Socket.io protocol v5
// packets. It does no I/O and keeps no state; every function is safe for
// concurrent use. Decoders treat their input as hostile: they never panic
// and return an error wrapping [ErrInvalidPacket] for anything malformed.
package protocol
