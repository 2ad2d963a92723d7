package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
)

// ErrInvalidPacket is wrapped by every decoding error.
var ErrInvalidPacket = errors.New("invalid packet")

type invalidError string

func (e invalidError) Error() string { return string(e) }
func (e invalidError) Unwrap() error { return ErrInvalidPacket }

func invalid(msg string) error { return invalidError("invalid packet: " + msg) }

// Type is a Socket.io packet type.
type Type byte

// Socket.io packet types.
const (
	Connect Type = iota
	Disconnect
	Event
	Ack
	ConnectError
	BinaryEvent
	BinaryAck
)

var typeNames = [...]string{"CONNECT", "DISCONNECT", "EVENT", "ACK", "CONNECT_ERROR", "BINARY_EVENT", "BINARY_ACK"}

func (t Type) String() string {
	if int(t) < len(typeNames) {
		return typeNames[t]
	}
	return "Type(" + strconv.Itoa(int(t)) + ")"
}

// NoID marks a packet that carries no ack id.
const NoID int64 = -1

// maxAckID bounds ack ids to what JavaScript numbers hold exactly.
const maxAckID = 1<<53 - 1

// Packet is one Socket.io packet.
type Packet struct {
	Type Type
	// Namespace is "/" when the wire omits it.
	Namespace string
	// ID is the ack id, or NoID.
	ID int64
	// Attachments is the number of binary attachments that follow a
	// BINARY_EVENT or BINARY_ACK.
	Attachments int
	// Data is the JSON payload as received, or nil.
	Data json.RawMessage
	// Event and Args are an EVENT's (or BINARY_EVENT's) name and
	// arguments, split out of Data by Decode.
	Event string
	Args  []json.RawMessage
}

// reserved are event names a client may not emit.
var reserved = map[string]bool{
	"connect": true, "connect_error": true, "disconnect": true,
	"disconnecting": true, "newListener": true, "removeListener": true,
}

// Decode parses a Socket.io packet (the payload of an Engine.IO message).
// The payload must be valid JSON of the shape the packet type allows.
func Decode(b []byte) (Packet, error) {
	p := Packet{Namespace: "/", ID: NoID}
	if len(b) == 0 {
		return p, invalid("empty socket.io packet")
	}
	if b[0] < '0' || b[0] > '6' {
		return p, invalid("unknown socket.io packet type " + strconv.QuoteRune(rune(b[0])))
	}
	p.Type = Type(b[0] - '0')
	i := 1
	if p.Type == BinaryEvent || p.Type == BinaryAck {
		start := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == start || i >= len(b) || b[i] != '-' || i-start > 6 {
			return p, invalid("bad attachment count")
		}
		n, _ := strconv.Atoi(string(b[start:i]))
		p.Attachments = n
		i++ // '-'
	}
	if i < len(b) && b[i] == '/' {
		start := i
		for i < len(b) && b[i] != ',' {
			i++
		}
		p.Namespace = string(b[start:i])
		if i < len(b) {
			i++ // ','
		}
	}
	if i < len(b) && b[i] >= '0' && b[i] <= '9' {
		start := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i-start > 16 {
			return p, invalid("ack id too long")
		}
		id, err := strconv.ParseInt(string(b[start:i]), 10, 64)
		if err != nil || id > maxAckID {
			return p, invalid("bad ack id")
		}
		p.ID = id
	}
	if i < len(b) {
		p.Data = b[i:]
		if !json.Valid(p.Data) {
			return p, invalid("payload is not valid JSON")
		}
	}
	if err := checkPayload(&p); err != nil {
		return p, err
	}
	return p, nil
}

func firstByte(data []byte) byte {
	data = bytes.TrimLeft(data, " \t\r\n")
	if len(data) == 0 {
		return 0
	}
	return data[0]
}

func checkPayload(p *Packet) error {
	switch p.Type {
	case Connect:
		if p.Data != nil && firstByte(p.Data) != '{' {
			return invalid("CONNECT payload must be an object")
		}
	case Disconnect:
		if p.Data != nil {
			return invalid("DISCONNECT takes no payload")
		}
	case ConnectError:
		if c := firstByte(p.Data); c != '{' && c != '"' {
			return invalid("CONNECT_ERROR payload must be an object or a string")
		}
	case Event, BinaryEvent:
		name, args, err := SplitEvent(p.Data)
		if err != nil {
			return err
		}
		p.Event, p.Args = name, args
	case Ack, BinaryAck:
		if p.ID == NoID {
			return invalid("ACK without id")
		}
		if firstByte(p.Data) != '[' {
			return invalid("ACK payload must be an array")
		}
	}
	return nil
}

// SplitEvent splits an EVENT payload into the event name and its arguments.
// A numeric event name is returned in its decimal form, as Socket.io does.
func SplitEvent(data json.RawMessage) (string, []json.RawMessage, error) {
	items, err := SplitArray(data)
	if err != nil {
		return "", nil, invalid("EVENT payload must be an array")
	}
	if len(items) == 0 {
		return "", nil, invalid("EVENT payload is an empty array")
	}
	var name string
	switch first := items[0]; first[0] {
	case '"':
		if bytes.IndexByte(first, '\\') < 0 {
			name = string(first[1 : len(first)-1])
		} else if err := json.Unmarshal(first, &name); err != nil {
			return "", nil, invalid("event name: " + err.Error())
		}
		if reserved[name] {
			return "", nil, invalid("reserved event name " + strconv.Quote(name))
		}
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		name = string(first)
	default:
		return "", nil, invalid("event name must be a string or a number")
	}
	return name, items[1:], nil
}

// SplitArray splits a JSON array (an ACK payload) into its elements,
// which share the input's memory. It scans the array once.
func SplitArray(data json.RawMessage) ([]json.RawMessage, error) {
	if !json.Valid(data) {
		return nil, invalid("array payload is not valid JSON")
	}
	i := skipSpace(data, 0)
	if i >= len(data) || data[i] != '[' {
		return nil, invalid("payload must be an array")
	}
	i = skipSpace(data, i+1)
	if i < len(data) && data[i] == ']' {
		return []json.RawMessage{}, nil
	}
	items := make([]json.RawMessage, 0, 4)
	for i < len(data) {
		end := valueEnd(data, i)
		items = append(items, data[i:end])
		i = skipSpace(data, end)
		if i < len(data) && data[i] == ',' {
			i = skipSpace(data, i+1)
			continue
		}
		break // ']'
	}
	return items, nil
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// valueEnd returns the end of the JSON value starting at i in input that
// json.Valid accepted.
func valueEnd(b []byte, i int) int {
	depth := 0
	for ; i < len(b); i++ {
		switch b[i] {
		case '"':
			for i++; i < len(b) && b[i] != '"'; i++ {
				if b[i] == '\\' {
					i++
				}
			}
			if depth == 0 {
				return i + 1
			}
		case '[', '{':
			depth++
		case ']', '}':
			if depth == 0 {
				return i // the end of the enclosing array
			}
			depth--
			if depth == 0 {
				return i + 1
			}
		case ',', ' ', '\t', '\n', '\r':
			if depth == 0 {
				return i
			}
		}
	}
	return i
}

// AppendHeader appends the Engine.IO message type and the Socket.io header
// (type, attachments, namespace, ack id) of a packet, before its payload.
func AppendHeader(dst []byte, t Type, ns string, id int64) []byte {
	dst = append(dst, byte(EIOMessage), '0'+byte(t))
	if ns != "" && ns != "/" {
		dst = append(dst, ns...)
		dst = append(dst, ',')
	}
	if id >= 0 {
		dst = strconv.AppendInt(dst, id, 10)
	}
	return dst
}

// Encode returns p as a complete Engine.IO message frame ("4" + packet).
func Encode(p Packet) []byte {
	dst := make([]byte, 0, 8+len(p.Namespace)+len(p.Data))
	dst = append(dst, byte(EIOMessage), '0'+byte(p.Type))
	if p.Type == BinaryEvent || p.Type == BinaryAck {
		dst = strconv.AppendInt(dst, int64(p.Attachments), 10)
		dst = append(dst, '-')
	}
	if p.Namespace != "" && p.Namespace != "/" {
		dst = append(dst, p.Namespace...)
		dst = append(dst, ',')
	}
	if p.ID >= 0 {
		dst = strconv.AppendInt(dst, p.ID, 10)
	}
	return append(dst, p.Data...)
}

// AppendEvent appends a complete EVENT frame: "4" + "2" + namespace + ack
// id + ["event", args...]. Each arg must be valid JSON.
func AppendEvent(dst []byte, ns string, id int64, event string, args ...json.RawMessage) []byte {
	dst = AppendHeader(dst, Event, ns, id)
	dst = append(dst, '[')
	dst = appendJSONString(dst, event)
	for _, a := range args {
		dst = append(dst, ',')
		dst = append(dst, a...)
	}
	return append(dst, ']')
}

// AppendAck appends a complete ACK frame with the given arguments.
func AppendAck(dst []byte, ns string, id int64, args ...json.RawMessage) []byte {
	dst = AppendHeader(dst, Ack, ns, id)
	dst = append(dst, '[')
	for i, a := range args {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, a...)
	}
	return append(dst, ']')
}

// ConnectErrorPayload is the payload of a CONNECT_ERROR packet.
type ConnectErrorPayload struct {
	Message string `json:"message"`
	Data    any    `json:"data,omitempty"`
}

// ConnectErrorFrame returns the CONNECT_ERROR frame for a namespace.
func ConnectErrorFrame(ns string, payload ConnectErrorPayload) []byte {
	b, err := json.Marshal(payload)
	if err != nil {
		b = []byte(`{"message":"Internal error"}`)
	}
	return append(AppendHeader(nil, ConnectError, ns, NoID), b...)
}

// ConnectFrame returns the CONNECT reply that admits a socket to a namespace.
func ConnectFrame(ns, sid string) []byte {
	dst := AppendHeader(nil, Connect, ns, NoID)
	dst = append(dst, `{"sid":`...)
	dst = appendJSONString(dst, sid)
	return append(dst, '}')
}

// DisconnectFrame returns the DISCONNECT packet for a namespace.
func DisconnectFrame(ns string) []byte { return AppendHeader(nil, Disconnect, ns, NoID) }

// appendJSONString appends s as a JSON string. Plain ASCII without quotes,
// backslashes or control bytes, the common case for event names, is copied
// as is; anything else goes through encoding/json.
func appendJSONString(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c == '"' || c == '\\' || c >= 0x7f || c == '<' || c == '>' || c == '&' {
			b, _ := json.Marshal(s) // a string always marshals
			return append(dst, b...)
		}
	}
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"')
}
