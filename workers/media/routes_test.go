package media

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

func TestResolveDefaultRoutes(t *testing.T) {
	r := DefaultRoutes()
	tests := []struct {
		name string
		data map[string]any
		want string
		bad  bool
	}{
		{"download.progress", map[string]any{"user_id": "42", "download_id": "d", "progress": 5.0}, "[{download:progress / user:42}]", false},
		{"download.failed", map[string]any{"user_id": "42", "download_id": "d"}, "[{download:failed / user:42}]", false},
		{"request.status", map[string]any{"user_id": "42", "request_id": "r7", "status": "approved"}, "[{request:status / user:42} {request:r7:status / request:r7}]", false},
		{"service.status", map[string]any{"service_id": "plex", "status": "up"}, "[{service:status / status-updates}]", false},
		{"notification.created", map[string]any{"user_id": "42", "notification": map[string]any{}}, "[{notification:new / user:42}]", false},
		{"notification.created", map[string]any{"notification": map[string]any{}}, "[{notification:system / _all}]", false},
		{"library.item_available", map[string]any{"media_id": "m", "title": "T", "media_type": "movie"}, "[{media:available / _all}]", false},
		{"download.progress", map[string]any{"download_id": "d"}, "", true},
		{"download.progress", map[string]any{"user_id": 42.0}, "", true},
		{"weather.report", map[string]any{}, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := r.Resolve(tt.name, tt.data)
			if tt.bad {
				if err == nil {
					t.Fatalf("Resolve = %v, want an error", got)
				}
				return
			}
			if err != nil || fmt.Sprint(got) != tt.want {
				t.Fatalf("Resolve = %v, %v; want %s", got, err, tt.want)
			}
		})
	}
}

func TestLoadRoutes(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "routes.json")
	os.WriteFile(good, []byte(`{"download.progress":[{"event":"dl","namespace":"/media","room":"user:{user_id}"}]}`), 0o600)
	r, err := LoadRoutes(good)
	if err != nil {
		t.Fatal(err)
	}
	got, err := r.Resolve("download.progress", map[string]any{"user_id": "1"})
	if err != nil || fmt.Sprint(got) != "[{dl /media user:1}]" {
		t.Fatalf("%v %v", got, err)
	}
	for _, bad := range []string{`{`, `{"x":[{"event":"","room":"r"}]}`, `{"x":[{"event":"e","room":"r","namespace":"media"}]}`} {
		p := filepath.Join(dir, "bad.json")
		os.WriteFile(p, []byte(bad), 0o600)
		if _, err := LoadRoutes(p); err == nil {
			t.Fatalf("%s loaded", bad)
		}
	}
}
