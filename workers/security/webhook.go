package security

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// SignatureHeader carries "sha256=<hex HMAC-SHA256 of the body>".
const SignatureHeader = "X-Medianest-Signature"

// WebhookConfig configures the optional alert webhook.
type WebhookConfig struct {
	// URL receives a JSON POST of each alert's CloudEvent.
	URL string
	// Secret signs the body (HMAC-SHA256) in [SignatureHeader]; optional.
	Secret string
	// Attempts per alert; default 6.
	Attempts int
	// MaxBackoff caps the delay between attempts; default 30s.
	MaxBackoff time.Duration
	// Queue bounds the alerts waiting for delivery; default 1024. When it
	// is full an alert is not sent to the webhook (it is still on the
	// alerts stream) and the loss is counted.
	Queue int
}

// webhook delivers alerts from its own goroutine: the worker never waits.
type webhook struct {
	cfg     WebhookConfig
	client  *http.Client
	queue   chan []byte
	log     zerolog.Logger
	results *prometheus.CounterVec
}

func newWebhook(cfg WebhookConfig, log zerolog.Logger, reg prometheus.Registerer) *webhook {
	if cfg.Attempts <= 0 {
		cfg.Attempts = 6
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 30 * time.Second
	}
	if cfg.Queue <= 0 {
		cfg.Queue = 1024
	}
	w := &webhook{
		cfg: cfg, client: &http.Client{Timeout: 10 * time.Second}, queue: make(chan []byte, cfg.Queue), log: log,
		results: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "medianest_alert_webhook_total", Help: "Alert webhook deliveries, by result (delivered, failed, dropped).",
		}, []string{"result"}),
	}
	if reg != nil {
		reg.MustRegister(w.results)
	}
	return w
}

func (w *webhook) enqueue(body []byte) {
	select {
	case w.queue <- body:
	default:
		w.results.WithLabelValues("dropped").Inc()
		w.log.Warn().Msg("alert webhook queue full; alert not sent to the webhook")
	}
}

func (w *webhook) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case body := <-w.queue:
			w.deliver(ctx, body)
		}
	}
}

// Sign returns the signature header value of body under secret.
func Sign(secret string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

func (w *webhook) deliver(ctx context.Context, body []byte) {
	delay := 250 * time.Millisecond
	for attempt := 1; attempt <= w.cfg.Attempts; attempt++ {
		err := w.post(ctx, body)
		if err == nil {
			w.results.WithLabelValues("delivered").Inc()
			return
		}
		w.log.Warn().Err(err).Int("attempt", attempt).Msg("alert webhook failed")
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		delay = min(delay*2, w.cfg.MaxBackoff)
	}
	w.results.WithLabelValues("failed").Inc()
}

func (w *webhook) post(ctx context.Context, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/cloudevents+json")
	if w.cfg.Secret != "" {
		req.Header.Set(SignatureHeader, Sign(w.cfg.Secret, body))
	}
	resp, err := w.client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode >= 300 {
		return fmt.Errorf("webhook answered %d", resp.StatusCode)
	}
	return nil
}
