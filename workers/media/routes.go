package media

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"
)

// Target is one Socket.io emit a media event turns into. Event and Room
// may hold {field} placeholders, filled from the event's data.
type Target struct {
	// Event is the Socket.io event name, like "download:progress".
	Event string `json:"event"`
	// Namespace is the Socket.io namespace; default "/".
	Namespace string `json:"namespace,omitempty"`
	// Room is the room, like "user:{user_id}", or "_all".
	Room string `json:"room"`
	// When names a data field that must be present for this target.
	When string `json:"when,omitempty"`
	// Unless names a data field that must be absent for this target.
	Unless string `json:"unless,omitempty"`
}

// Routes maps a media event name ("download.progress") to its targets.
// It is data: [DefaultRoutes] is the documented default, and a JSON file
// of the same shape replaces it (MEDIANEST_MEDIA_ROUTES).
type Routes map[string][]Target

// DefaultRoutes is the routing table of the media event catalogue.
func DefaultRoutes() Routes {
	user := func(event string) []Target { return []Target{{Event: event, Room: "user:{user_id}"}} }
	return Routes{
		"download.progress":      user("download:progress"),
		"download.completed":     user("download:completed"),
		"download.failed":        user("download:failed"),
		"download.cancelled":     user("download:cancelled"),
		"request.status":         {{Event: "request:status", Room: "user:{user_id}"}, {Event: "request:{request_id}:status", Room: "request:{request_id}"}},
		"service.status":         {{Event: "service:status", Room: "status-updates"}},
		"notification.created":   {{Event: "notification:new", Room: "user:{user_id}", When: "user_id"}, {Event: "notification:system", Room: "_all", Unless: "user_id"}},
		"library.item_available": {{Event: "media:available", Room: "_all"}},
	}
}

// LoadRoutes reads a routing table from a JSON file.
func LoadRoutes(path string) (Routes, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("media routes: %w", err)
	}
	var r Routes
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("media routes %s: %w", path, err)
	}
	if err := r.Validate(); err != nil {
		return nil, fmt.Errorf("media routes %s: %w", path, err)
	}
	return r, nil
}

var placeholder = regexp.MustCompile(`\{([a-z_]+)\}`)

// Validate checks every target names an event and a room.
func (r Routes) Validate() error {
	names := make([]string, 0, len(r))
	for n := range r {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		for i, t := range r[n] {
			if t.Event == "" || t.Room == "" {
				return fmt.Errorf("route %s[%d]: event and room are required", n, i)
			}
			if t.Namespace != "" && !strings.HasPrefix(t.Namespace, "/") {
				return fmt.Errorf("route %s[%d]: namespace %q must start with /", n, i, t.Namespace)
			}
		}
	}
	return nil
}

// Emit is a resolved target.
type Emit struct {
	Event, Namespace, Room string
}

// Resolve turns an event's data into the emits its route names. A target
// whose placeholder names a missing or non-string field is an error.
func (r Routes) Resolve(name string, data map[string]any) ([]Emit, error) {
	targets, ok := r[name]
	if !ok {
		return nil, fmt.Errorf("no route for media event %q", name)
	}
	var out []Emit
	for _, t := range targets {
		if t.When != "" && !present(data, t.When) {
			continue
		}
		if t.Unless != "" && present(data, t.Unless) {
			continue
		}
		event, err := fill(t.Event, data)
		if err != nil {
			return nil, err
		}
		room, err := fill(t.Room, data)
		if err != nil {
			return nil, err
		}
		ns := t.Namespace
		if ns == "" {
			ns = "/"
		}
		out = append(out, Emit{Event: event, Namespace: ns, Room: room})
	}
	return out, nil
}

func present(data map[string]any, field string) bool {
	v, ok := data[field]
	return ok && v != nil && v != ""
}

func fill(tmpl string, data map[string]any) (string, error) {
	var err error
	out := placeholder.ReplaceAllStringFunc(tmpl, func(m string) string {
		field := m[1 : len(m)-1]
		s, ok := data[field].(string)
		if !ok || s == "" {
			err = fmt.Errorf("%s needs the string field %s", tmpl, field)
		}
		return s
	})
	return out, err
}
