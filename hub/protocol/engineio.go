package protocol

import (
	"encoding/json"
	"strconv"
	"time"
)

// EIOType is an Engine.IO packet type, sent as one ASCII digit.
type EIOType byte

// Engine.IO packet types.
const (
	EIOOpen    EIOType = '0'
	EIOClose   EIOType = '1'
	EIOPing    EIOType = '2'
	EIOPong    EIOType = '3'
	EIOMessage EIOType = '4'
	EIOUpgrade EIOType = '5'
	EIONoop    EIOType = '6'
)

// Valid reports whether t is a known Engine.IO packet type.
func (t EIOType) Valid() bool { return t >= EIOOpen && t <= EIONoop }

// Handshake is the payload of the Engine.IO open packet.
type Handshake struct {
	SID          string   `json:"sid"`
	Upgrades     []string `json:"upgrades"`
	PingInterval int64    `json:"pingInterval"`
	PingTimeout  int64    `json:"pingTimeout"`
	MaxPayload   int64    `json:"maxPayload"`
}

// OpenPacket encodes the Engine.IO open packet for a new session.
func OpenPacket(sid string, pingInterval, pingTimeout time.Duration, maxPayload int64) []byte {
	b, _ := json.Marshal(Handshake{ // a struct of strings and ints always marshals
		SID:          sid,
		Upgrades:     []string{},
		PingInterval: pingInterval.Milliseconds(),
		PingTimeout:  pingTimeout.Milliseconds(),
		MaxPayload:   maxPayload,
	})
	return append([]byte{byte(EIOOpen)}, b...)
}

// DecodeEIO splits a text frame into its Engine.IO type and payload.
func DecodeEIO(frame []byte) (EIOType, []byte, error) {
	if len(frame) == 0 {
		return 0, nil, invalid("empty engine.io packet")
	}
	t := EIOType(frame[0])
	if !t.Valid() {
		return 0, nil, invalid("unknown engine.io packet type " + strconv.QuoteRune(rune(frame[0])))
	}
	return t, frame[1:], nil
}
