package security

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

func TestWebhookSignsAndRetries(t *testing.T) {
	const secret = "webhook-secret"
	var calls atomic.Int32
	got := make(chan []byte, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.Header.Get(SignatureHeader) != Sign(secret, body) {
			t.Errorf("signature %q does not match the body", r.Header.Get(SignatureHeader))
		}
		if calls.Add(1) < 3 { // two failures, then success
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		got <- body
	}))
	defer srv.Close()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wh := newWebhook(WebhookConfig{URL: srv.URL, Secret: secret, MaxBackoff: 50 * time.Millisecond}, zerolog.Nop(), nil)
	go wh.run(ctx)
	wh.enqueue([]byte(`{"type":"medianest.alert.brute_force.v1"}`))
	select {
	case body := <-got:
		if string(body) != `{"type":"medianest.alert.brute_force.v1"}` || calls.Load() != 3 {
			t.Fatalf("delivered %s after %d calls", body, calls.Load())
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("not delivered after %d calls", calls.Load())
	}
}

func TestWebhookNeverBlocks(t *testing.T) {
	// Nobody drains the queue: enqueue must still return at once.
	wh := newWebhook(WebhookConfig{URL: "http://127.0.0.1:1", Queue: 2}, zerolog.Nop(), nil)
	done := make(chan struct{})
	go func() {
		for range 100 {
			wh.enqueue([]byte("{}"))
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("enqueue blocked on a full queue")
	}
}

func TestSign(t *testing.T) {
	// HMAC-SHA256("key", "The quick brown fox jumps over the lazy dog"), a published test vector.
	want := "sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
	if got := Sign("key", []byte("The quick brown fox jumps over the lazy dog")); got != want {
		t.Fatalf("Sign = %s, want %s", got, want)
	}
}
