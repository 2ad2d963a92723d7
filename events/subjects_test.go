package events

import (
	"errors"
	"strings"
	"testing"
)

func TestEscapeToken(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"plain", "download", "download"},
		{"colon kept", "user:42", "user:42"},
		{"dot", "a.b", "a%2Eb"},
		{"wildcards", "*>", "%2A%3E"},
		{"percent", "50%", "50%25"},
		{"space and tab", "a b\tc", "a%20b%09c"},
		{"control", "a\x00\x7f", "a%00%7F"},
		{"unicode kept", "média", "média"},
		{"empty", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := EscapeToken(tt.in)
			if got != tt.want {
				t.Fatalf("EscapeToken(%q) = %q, want %q", tt.in, got, tt.want)
			}
			back, err := UnescapeToken(got)
			if err != nil || back != tt.in {
				t.Fatalf("UnescapeToken(%q) = %q, %v; want %q", got, back, err, tt.in)
			}
		})
	}
}

func TestUnescapeTokenErrors(t *testing.T) {
	for _, in := range []string{"%", "%2", "%ZZ", "a%G0"} {
		t.Run(in, func(t *testing.T) {
			if _, err := UnescapeToken(in); !errors.Is(err, ErrBadSubject) {
				t.Fatalf("UnescapeToken(%q) err = %v, want ErrBadSubject", in, err)
			}
		})
	}
}

func TestSubjects(t *testing.T) {
	s := Subjects{}
	tests := []struct {
		name, got, want string
	}{
		{"emit root", must(s.Emit("/", "_all")), "medianest.hub.emit._root._all"},
		{"emit user", must(s.Emit("/media", "user:42")), "medianest.hub.emit.media.user:42"},
		{"emit injected", must(s.Emit("/media", "a.>")), "medianest.hub.emit.media.a%2E%3E"},
		{"recv", must(s.Recv("/media", "download:start")), "medianest.hub.recv.media.download:start"},
		{"recv wildcard event", must(s.Recv("/", "*")), "medianest.hub.recv._root.%2A"},
		{"ctl", s.Ctl("disconnect"), "medianest.hub.ctl.disconnect"},
		{"event", Subjects{Prefix: "mn"}.Event("security", "auth_failed"), "mn.events.security.auth_failed"},
		{"alert", s.Alert("critical", "brute_force"), "medianest.alerts.critical.brute_force"},
		{"dotted event name", s.Event("media", "download.progress"), "medianest.events.media.download.progress"},
		{"event name escaped per token", s.Event("media", "a b.c*"), "medianest.events.media.a%20b.c%2A"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Fatalf("got %q, want %q", tt.got, tt.want)
			}
		})
	}
	if _, err := s.Emit("/", ""); !errors.Is(err, ErrEmptyToken) {
		t.Fatalf("Emit with empty room: err = %v", err)
	}
	if _, err := s.Recv("/", ""); !errors.Is(err, ErrEmptyToken) {
		t.Fatalf("Recv with empty event: err = %v", err)
	}
}

func TestParseEmit(t *testing.T) {
	s := Subjects{}
	tests := []struct {
		name, subject, ns, room string
		bad                     bool
	}{
		{"root all", "medianest.hub.emit._root._all", "/", "_all", false},
		{"media user", "medianest.hub.emit.media.user:42", "/media", "user:42", false},
		{"escaped room", "medianest.hub.emit.media.a%2Eb", "/media", "a.b", false},
		{"extra token", "medianest.hub.emit.media.a.b", "", "", true},
		{"missing room", "medianest.hub.emit.media", "", "", true},
		{"other prefix", "other.hub.emit.media.x", "", "", true},
		{"bad escape", "medianest.hub.emit.media.%ZZ", "", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ns, room, err := s.ParseEmit(tt.subject)
			if tt.bad {
				if err == nil {
					t.Fatalf("ParseEmit(%q) = %q, %q; want error", tt.subject, ns, room)
				}
				return
			}
			if err != nil || ns != tt.ns || room != tt.room {
				t.Fatalf("ParseEmit(%q) = %q, %q, %v; want %q, %q", tt.subject, ns, room, err, tt.ns, tt.room)
			}
		})
	}
}

func FuzzEscapeToken(f *testing.F) {
	for _, seed := range []string{"", "a", "user:42", "a.b", "*", ">", "%", "%2E", " \t\n", "\x00\xff", "média.room"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tok := EscapeToken(s)
		if strings.ContainsAny(tok, ".*> \t\r\n\v\f") {
			t.Fatalf("EscapeToken(%q) = %q contains a separator, wildcard or white space", s, tok)
		}
		for i := 0; i < len(tok); i++ {
			if tok[i] < 0x20 || tok[i] == 0x7f {
				t.Fatalf("EscapeToken(%q) = %q contains control byte %#x", s, tok, tok[i])
			}
		}
		back, err := UnescapeToken(tok)
		if err != nil || back != s {
			t.Fatalf("round trip of %q: got %q, %v", s, back, err)
		}
	})
}

func must(s string, err error) string {
	if err != nil {
		panic(err)
	}
	return s
}

func BenchmarkEscapeToken(b *testing.B) {
	for name, in := range map[string]string{"plain": "user:42", "escaped": "room.with spaces*and>wildcards"} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = EscapeToken(in)
			}
		})
	}
	b.Run("emit_subject", func(b *testing.B) {
		s := Subjects{}
		b.ReportAllocs()
		for b.Loop() {
			_, _ = s.Emit("/media", "media:film-9")
		}
	})
}
