package protocol

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestDecode(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		want  Packet
		event string
		nargs int
	}{
		{name: "connect root", in: "0", want: Packet{Type: Connect, Namespace: "/", ID: NoID}},
		{name: "connect ns with auth", in: `0/media,{"token":"x"}`, want: Packet{Type: Connect, Namespace: "/media", ID: NoID, Data: json.RawMessage(`{"token":"x"}`)}},
		{name: "connect root with auth", in: `0{"token":"x"}`, want: Packet{Type: Connect, Namespace: "/", ID: NoID, Data: json.RawMessage(`{"token":"x"}`)}},
		{name: "disconnect ns", in: "1/admin,", want: Packet{Type: Disconnect, Namespace: "/admin", ID: NoID}},
		{name: "event", in: `2["hello",1,{"a":2}]`, want: Packet{Type: Event, Namespace: "/", ID: NoID, Data: json.RawMessage(`["hello",1,{"a":2}]`)}, event: "hello", nargs: 2},
		{name: "event ns ack", in: `2/media,12["ping"]`, want: Packet{Type: Event, Namespace: "/media", ID: 12, Data: json.RawMessage(`["ping"]`)}, event: "ping"},
		{name: "event numeric name", in: `2[42,"x"]`, want: Packet{Type: Event, Namespace: "/", ID: NoID, Data: json.RawMessage(`[42,"x"]`)}, event: "42", nargs: 1},
		{name: "ack", in: `3/media,7["ok"]`, want: Packet{Type: Ack, Namespace: "/media", ID: 7, Data: json.RawMessage(`["ok"]`)}},
		{name: "binary event", in: `51-["up",{"_placeholder":true,"num":0}]`, want: Packet{Type: BinaryEvent, Namespace: "/", ID: NoID, Attachments: 1, Data: json.RawMessage(`["up",{"_placeholder":true,"num":0}]`)}, event: "up", nargs: 1},
		{name: "binary ack ns", in: `62-/x,3[{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]`, want: Packet{Type: BinaryAck, Namespace: "/x", ID: 3, Attachments: 2, Data: json.RawMessage(`[{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]`)}},
		{name: "connect error string", in: `4"nope"`, want: Packet{Type: ConnectError, Namespace: "/", ID: NoID, Data: json.RawMessage(`"nope"`)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Decode([]byte(tt.in))
			if err != nil {
				t.Fatalf("Decode(%q): %v", tt.in, err)
			}
			if got.Type != tt.want.Type || got.Namespace != tt.want.Namespace || got.ID != tt.want.ID ||
				got.Attachments != tt.want.Attachments || string(got.Data) != string(tt.want.Data) {
				t.Fatalf("Decode(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
			if tt.event != "" {
				name, args, err := SplitEvent(got.Data)
				if err != nil || name != tt.event || len(args) != tt.nargs {
					t.Fatalf("SplitEvent = %q, %d args, %v; want %q, %d", name, len(args), err, tt.event, tt.nargs)
				}
			}
			// Encoding the decoded packet gives the input back.
			if enc := string(Encode(got)); enc != "4"+tt.in {
				t.Fatalf("Encode = %q, want %q", enc, "4"+tt.in)
			}
		})
	}
}

func TestDecodeInvalid(t *testing.T) {
	tests := []struct{ name, in string }{
		{"empty", ""},
		{"unknown type", "9"},
		{"letter type", "x"},
		{"bad json", `2["a"`},
		{"event not array", `2{"a":1}`},
		{"event empty array", `2[]`},
		{"event name object", `2[{}]`},
		{"event name null", `2[null]`},
		{"reserved event", `2["connect"]`},
		{"reserved disconnect", `2["disconnect"]`},
		{"connect array", `0[1]`},
		{"disconnect payload", `1{"a":1}`},
		{"ack without id", `3["x"]`},
		{"ack not array", `31{"x":1}`},
		{"binary without dash", `51["x"]`},
		{"binary no count", `5-["x"]`},
		{"huge ack id", `299999999999999999["x"]`},
		{"connect error number", `41`},
		{"trailing garbage", `2["a"]x`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if p, err := Decode([]byte(tt.in)); !errors.Is(err, ErrInvalidPacket) {
				t.Fatalf("Decode(%q) = %+v, %v; want ErrInvalidPacket", tt.in, p, err)
			}
		})
	}
}

func TestEncodeHelpers(t *testing.T) {
	tests := []struct{ name, got, want string }{
		{"event root", string(AppendEvent(nil, "/", NoID, "pong", json.RawMessage(`{"a":1}`))), `42["pong",{"a":1}]`},
		{"event ns ack", string(AppendEvent(nil, "/media", 5, "x")), `42/media,5["x"]`},
		{"event escaped name", string(AppendEvent(nil, "/", NoID, `a"b`)), `42["a\"b"]`},
		{"ack", string(AppendAck(nil, "/admin", 3, json.RawMessage(`1`), json.RawMessage(`"b"`))), `43/admin,3[1,"b"]`},
		{"ack empty", string(AppendAck(nil, "/", 0)), `430[]`},
		{"connect", string(ConnectFrame("/media", "abc")), `40/media,{"sid":"abc"}`},
		{"connect root", string(ConnectFrame("/", "abc")), `40{"sid":"abc"}`},
		{"connect error", string(ConnectErrorFrame("/x", ConnectErrorPayload{Message: "Invalid namespace"})), `44/x,{"message":"Invalid namespace"}`},
		{"connect error data", string(ConnectErrorFrame("/", ConnectErrorPayload{Message: "Authentication failed", Data: map[string]string{"code": "token_missing"}})), `44{"message":"Authentication failed","data":{"code":"token_missing"}}`},
		{"disconnect", string(DisconnectFrame("/media")), `41/media,`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Fatalf("got %q, want %q", tt.got, tt.want)
			}
		})
	}
}

func TestEngineIO(t *testing.T) {
	open := string(OpenPacket("sid1", 25*time.Second, 20*time.Second, 1000000))
	want := `0{"sid":"sid1","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}`
	if open != want {
		t.Fatalf("OpenPacket = %q, want %q", open, want)
	}
	// Built by hand, it says what encoding/json would, for every sid.
	for _, sid := range []string{"", "AbC-_09zZ", `q"uote`, `back\slash`, "<tag>&", "caf\u00e9", "nl\n"} {
		b, _ := json.Marshal(Handshake{SID: sid, Upgrades: []string{}, PingInterval: 1, PingTimeout: 2, MaxPayload: 3})
		if got := string(OpenPacket(sid, time.Millisecond, 2*time.Millisecond, 3)); got != "0"+string(b) {
			t.Fatalf("OpenPacket(%q) = %s, want 0%s", sid, got, b)
		}
	}
	tests := []struct {
		in      string
		typ     EIOType
		payload string
		bad     bool
	}{
		{in: "2", typ: EIOPing},
		{in: "3probe", typ: EIOPong, payload: "probe"},
		{in: `42["x"]`, typ: EIOMessage, payload: `2["x"]`},
		{in: "", bad: true},
		{in: "7", bad: true},
		{in: "a", bad: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			typ, payload, err := DecodeEIO([]byte(tt.in))
			if tt.bad {
				if !errors.Is(err, ErrInvalidPacket) {
					t.Fatalf("DecodeEIO(%q) err = %v, want ErrInvalidPacket", tt.in, err)
				}
				return
			}
			if err != nil || typ != tt.typ || string(payload) != tt.payload {
				t.Fatalf("DecodeEIO(%q) = %c, %q, %v", tt.in, typ, payload, err)
			}
		})
	}
}

func FuzzDecode(f *testing.F) {
	for _, seed := range []string{
		"0", `0/media,{"token":"x"}`, "1/admin,", `2["hello",1]`, `2/media,12["ping",{}]`,
		`3/x,7["ok"]`, `51-["up",{"_placeholder":true,"num":0}]`, `44{"message":"x"}`,
		`2[`, `2[42]`, "5-", "/", "0/", `2/a,["x"]`, strings.Repeat("[", 100),
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		p, err := Decode(in)
		if err != nil {
			if !errors.Is(err, ErrInvalidPacket) {
				t.Fatalf("Decode(%q) error %v does not wrap ErrInvalidPacket", in, err)
			}
			return
		}
		// Whatever decodes re-encodes to something that decodes the same.
		enc := Encode(p)
		q, err := Decode(enc[1:])
		if err != nil {
			t.Fatalf("re-decode of %q (from %q): %v", enc, in, err)
		}
		if q.Type != p.Type || q.Namespace != p.Namespace || q.ID != p.ID || q.Attachments != p.Attachments || string(q.Data) != string(p.Data) {
			t.Fatalf("round trip of %q: %+v != %+v", in, q, p)
		}
	})
}

func BenchmarkDecode(b *testing.B) {
	packets := map[string]string{
		"connect":      `0/media,{"token":"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiI0MiJ9.c2lnbmF0dXJl"}`,
		"event":        `2/media,["media-status",{"roomId":"film-9","state":"playing","position":12.5}]`,
		"event_ack":    `2/media,12["join-media-room",{"roomId":"film-9"}]`,
		"ack":          `3/media,12[{"ok":true}]`,
		"disconnect":   `1/media,`,
		"binary_event": `51-["upload",{"_placeholder":true,"num":0}]`,
	}
	for name, p := range packets {
		b.Run(name, func(b *testing.B) {
			in := []byte(p)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Decode(in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("split_event", func(b *testing.B) {
		data := json.RawMessage(`["media-status",{"roomId":"film-9","state":"playing","position":12.5}]`)
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := SplitEvent(data); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkEncode(b *testing.B) {
	arg := json.RawMessage(`{"roomId":"film-9","state":"playing","position":12.5,"userId":"42"}`)
	b.Run("event", func(b *testing.B) {
		buf := make([]byte, 0, 256)
		b.ReportAllocs()
		for b.Loop() {
			buf = AppendEvent(buf[:0], "/media", NoID, "media-status", arg)
		}
	})
	b.Run("ack", func(b *testing.B) {
		buf := make([]byte, 0, 256)
		b.ReportAllocs()
		for b.Loop() {
			buf = AppendAck(buf[:0], "/media", 12, arg)
		}
	})
	b.Run("connect", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = ConnectFrame("/media", "AbCdEfGhIjKlMnOpQrSt")
		}
	})
}

// FuzzSplitArray checks the one-pass splitter against encoding/json.
func FuzzSplitArray(f *testing.F) {
	for _, seed := range []string{`[]`, `[1]`, ` [ "a" , {"b":[1,2,{"c":"]"}]} , null,true ] `, `["a\"]",2]`, `[[],[[]],{}]`, `[1.5e3,-2]`, `{}`, `"x"`} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		var want []json.RawMessage
		werr := json.Unmarshal(in, &want)
		if werr == nil && want == nil {
			return // null decodes to a nil slice; it is no array
		}
		got, gerr := SplitArray(in)
		if (werr == nil) != (gerr == nil) {
			t.Fatalf("SplitArray(%q) err = %v, encoding/json err = %v", in, gerr, werr)
		}
		if werr != nil {
			return
		}
		if len(got) != len(want) {
			t.Fatalf("SplitArray(%q) = %q, want %q", in, got, want)
		}
		for i := range got {
			if string(got[i]) != string(want[i]) {
				t.Fatalf("element %d of %q: %q, want %q", i, in, got[i], want[i])
			}
		}
	})
}
