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

// OpenPacket encodes the Engine.IO open packet for a new session. It is
// written once per connection, so it is appended by hand, not marshalled.
func OpenPacket(sid string, pingInterval, pingTimeout time.Duration, maxPayload int64) []byte {
	if !plainString(sid) {
		b, _ := json.Marshal(Handshake{ // a struct of strings and ints always marshals
			SID:          sid,
			Upgrades:     []string{},
			PingInterval: pingInterval.Milliseconds(),
			PingTimeout:  pingTimeout.Milliseconds(),
			MaxPayload:   maxPayload,
		})
		return append([]byte{byte(EIOOpen)}, b...)
	}
	b := make([]byte, 0, 100+len(sid))
	b = append(b, byte(EIOOpen))
	b = append(b, `{"sid":"`...)
	b = append(b, sid...)
	b = append(b, `","upgrades":[],"pingInterval":`...)
	b = strconv.AppendInt(b, pingInterval.Milliseconds(), 10)
	b = append(b, `,"pingTimeout":`...)
	b = strconv.AppendInt(b, pingTimeout.Milliseconds(), 10)
	b = append(b, `,"maxPayload":`...)
	b = strconv.AppendInt(b, maxPayload, 10)
	return append(b, '}')
}

// plainString reports whether s needs no escaping in a JSON string (nor
// in encoding/json's HTML-safe output).
func plainString(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
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
