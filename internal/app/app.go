// Package app assembles a medianest-hub process from its configuration:
// the embedded or external NATS connection, the store, the hub node and
// the HTTP surface (Socket.io, health, readiness, metrics, admin API). It
// is what `medianest-hub serve` runs and what end-to-end tests start.
package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"

	"github.com/medianest/hub/events"
	"github.com/medianest/hub/hub"
	"github.com/medianest/hub/hub/auth"
	"github.com/medianest/hub/hub/engineio"
	"github.com/medianest/hub/hub/sessions"
	"github.com/medianest/hub/internal/bus"
	"github.com/medianest/hub/internal/config"
	"github.com/medianest/hub/internal/natsembed"
	"github.com/medianest/hub/internal/store"
	"github.com/medianest/hub/schema"
	mediaworker "github.com/medianest/hub/workers/media"
	securityworker "github.com/medianest/hub/workers/security"
	sessionworker "github.com/medianest/hub/workers/session"
)

// App is one running medianest-hub process.
type App struct {
	cfg      config.Config
	log      zerolog.Logger
	embedded *server.Server
	nc       *nats.Conn
	js       jetstream.JetStream

	workerCtx   context.Context
	stopWorkers context.CancelFunc
	workers     sync.WaitGroup

	store   *store.Store
	node    *hub.Node
	reg     *prometheus.Registry
	handler http.Handler
}

// Options are the process-level collaborators of an App.
type Options struct {
	Logger  zerolog.Logger
	LogFeed *hub.LogFeed
	// Policies override the default namespace policies.
	Policies []hub.Policy
}

// New connects everything cfg names and builds the node. The caller must
// Close the App.
func New(ctx context.Context, cfg config.Config, o Options) (*App, error) {
	a := &App{cfg: cfg, log: o.Logger, reg: prometheus.NewRegistry()}
	if err := a.init(ctx, o); err != nil {
		a.Close()
		return nil, err
	}
	return a, nil
}

func (a *App) init(ctx context.Context, o Options) (err error) {
	cfg := a.cfg
	a.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	if cfg.NATSURL == "" {
		a.embedded, err = natsembed.Start(natsembed.Options{
			StoreDir: filepath.Join(cfg.DataDir, "jetstream"),
			Listen:   cfg.NATSListen,
		})
		if err != nil {
			return err
		}
		a.nc, err = natsembed.Connect(a.embedded, "medianest-hub", natsOptions(a.log)...)
		if err != nil {
			return err
		}
		if cfg.NATSListen != "" {
			a.log.Info().Str("url", a.embedded.ClientURL()).Msg("embedded NATS accepts clients")
		}
	} else {
		a.nc, err = nats.Connect(cfg.NATSURL, append(natsOptions(a.log), nats.Name("medianest-hub"))...)
		if err != nil {
			return fmt.Errorf("connect to NATS at MEDIANEST_NATS_URL: %w", err)
		}
	}

	a.js, err = jetstream.New(a.nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	sctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	err = bus.EnsureStreams(sctx, a.js, bus.StreamOptions{Prefix: cfg.SubjectPrefix, MaxAge: cfg.EventsMaxAge})
	cancel()
	if err != nil {
		return fmt.Errorf("%w (does the NATS server have JetStream enabled?)", err)
	}
	validator, err := schema.NewValidator()
	if err != nil {
		return err
	}

	a.store, err = store.Open(ctx, cfg.DatabaseURL, cfg.DataDir)
	if err != nil {
		return err
	}

	if cfg.Runs(config.ComponentSessionWorker) {
		w := sessionworker.New(sessionworker.Config{
			Prefix: cfg.SubjectPrefix, TokenMaxLifetime: cfg.TokenMaxLifetime, CleanupInterval: cfg.CleanupInterval,
			ProcessedRetention: cfg.EventsMaxAge,
		}, a.nc, a.js, a.store, validator, a.log, a.reg)
		a.startWorker("session", w.Run)
	}
	if cfg.Runs(config.ComponentSecurityWorker) {
		w := securityworker.New(securityRules(cfg), a.nc, a.js, a.store, validator, a.log, a.reg)
		a.startWorker("security", w.Run)
	}
	if cfg.Runs(config.ComponentMediaWorker) {
		routes := mediaworker.DefaultRoutes()
		if cfg.MediaRoutesFile != "" {
			if routes, err = mediaworker.LoadRoutes(cfg.MediaRoutesFile); err != nil {
				return fmt.Errorf("MEDIANEST_MEDIA_ROUTES: %w", err)
			}
		}
		rate := cfg.MediaProgressRate
		if rate == 0 {
			rate = -1 // off
		}
		w := mediaworker.New(mediaworker.Config{Prefix: cfg.SubjectPrefix, Routes: routes, MaxProgressRate: rate}, a.nc, a.js, validator, a.log, a.reg)
		a.startWorker("media", w.Run)
	}
	if !cfg.Runs(config.ComponentHub) {
		a.handler = a.routes()
		return nil
	}
	cache := sessions.New(cfg.SessionMode, sessionLookup{a.store}, cfg.TokenMaxLifetime)
	revs, err := a.store.ActiveRevocations(ctx, time.Now())
	if err != nil {
		return err
	}
	loaded := make([]sessions.Revocation, len(revs))
	for i, r := range revs {
		loaded[i] = sessions.Revocation{Kind: r.Kind, Value: r.Value, RevokedAt: r.RevokedAt, ExpiresAt: r.ExpiresAt}
	}
	cache.Load(loaded)
	blockSource := func(ctx context.Context) ([]events.BlockMessage, error) {
		blocks, err := a.store.ActiveBlocks(ctx, time.Now())
		if err != nil {
			return nil, err
		}
		out := make([]events.BlockMessage, len(blocks))
		for i, b := range blocks {
			out[i] = events.BlockMessage{IP: b.IP, Until: b.ExpiresAt, Reason: b.Reason}
		}
		return out, nil
	}
	initialBlocks, err := blockSource(ctx)
	if err != nil {
		return err
	}

	var prev []byte
	if cfg.JWTSecretPrevious != "" {
		prev = []byte(cfg.JWTSecretPrevious)
	}
	verifier, err := auth.NewVerifier(auth.Config{
		Secret: []byte(cfg.JWTSecret), PreviousSecret: prev, Issuer: cfg.JWTIssuer, Audience: cfg.JWTAudience,
		MaxLifetime: cfg.TokenMaxLifetime,
	})
	if err != nil {
		return err
	}
	a.node, err = hub.New(hub.Config{
		NodeID:        cfg.NodeID,
		SubjectPrefix: cfg.SubjectPrefix,
		Engine: engineio.Config{
			PingInterval: cfg.PingInterval,
			PingTimeout:  cfg.PingTimeout,
			MaxPayload:   cfg.MaxPayload,
			SendQueue:    cfg.SendQueue,
			WriteDelay:   cfg.WriteDelay,
		},
		AllowedOrigins:   cfg.AllowedOrigins,
		TrustedProxies:   cfg.TrustedProxies,
		ConnectPerMinute: cfg.RateConnectPerMin,
		EventsPerMinute:  cfg.RateEventsPerMin,
		AckTimeout:       cfg.AckTimeout,
		Policies:         o.Policies,
		ExpiryWarning:    cfg.ExpiryWarning,
		ExpiryGrace:      cfg.ExpiryGrace,
	}, hub.Deps{
		NATS: a.nc, Verifier: verifier, Logger: a.log, Registerer: a.reg,
		Auditor: auditor{a.store, cfg.NodeID}, LogFeed: o.LogFeed,
		Sessions: cache, JetStream: a.js, Validator: validator, Blocks: initialBlocks, BlockSource: blockSource,
	})
	if err != nil {
		return err
	}
	if err := a.node.Start(ctx); err != nil {
		return err
	}
	a.handler = a.routes()
	return nil
}

func natsOptions(log zerolog.Logger) []nats.Option {
	return []nats.Option{
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectBufSize(64 << 20),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil { // nil on a deliberate close
				log.Warn().Err(err).Msg("NATS disconnected")
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info().Str("url", nc.ConnectedUrlRedacted()).Msg("NATS reconnected")
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			ev := log.Error().Err(err)
			if sub != nil {
				ev = ev.Str("subject", sub.Subject)
			}
			ev.Msg("NATS error")
		}),
	}
}

// startWorker runs a worker until Close.
func (a *App) startWorker(name string, run func(context.Context) error) {
	if a.workerCtx == nil {
		a.workerCtx, a.stopWorkers = context.WithCancel(context.Background())
	}
	a.workers.Add(1)
	go func() {
		defer a.workers.Done()
		if err := run(a.workerCtx); err != nil {
			a.log.Error().Err(err).Str("worker", name).Msg("worker stopped")
		}
	}()
}

// securityRules maps the configuration onto the security worker's.
func securityRules(cfg config.Config) securityworker.Config {
	rule := func(name string) securityworker.Rule {
		t := cfg.Detections[name]
		return securityworker.Rule{Threshold: t.Count, Window: t.Window}
	}
	return securityworker.Config{
		Prefix: cfg.SubjectPrefix,
		Rules: securityworker.Rules{
			BruteForce: rule("brute_force"), CredentialStuffing: rule("credential_stuffing"),
			TokenReplay: rule("token_replay"), PrivilegeProbing: rule("privilege_probing"), RateAbuse: rule("rate_abuse"),
		},
		NoIPBlocks:         !cfg.SecurityBlockIPs,
		BlockFor:           cfg.SecurityBlockFor,
		NoReplayRevocation: !cfg.SecurityRevokeReplay,
		Webhook:            securityworker.WebhookConfig{URL: cfg.AlertWebhookURL, Secret: cfg.AlertWebhookSecret},
	}
}

// sessionLookup adapts the store to the hub's session cache.
type sessionLookup struct{ s *store.Store }

func (l sessionLookup) SessionByID(ctx context.Context, id string) (*sessions.Record, error) {
	sess, err := l.s.SessionByID(ctx, id)
	return record(sess), err
}

func (l sessionLookup) SessionByTokenSHA(ctx context.Context, sha string) (*sessions.Record, error) {
	sess, err := l.s.SessionByTokenSHA(ctx, sha)
	return record(sess), err
}

func record(s *store.Session) *sessions.Record {
	if s == nil {
		return nil
	}
	r := &sessions.Record{ID: s.ID, UserID: s.UserID, ExpiresAt: s.ExpiresAt, Ended: !s.EndedAt.IsZero(), Revoked: !s.RevokedAt.IsZero()}
	if s.TokenSHA256 != nil {
		r.TokenSHA256 = *s.TokenSHA256
	}
	return r
}

// auditor adapts the store to the node's Auditor.
type auditor struct {
	s    *store.Store
	node string
}

func (a auditor) Audit(ctx context.Context, actor, action, target, result string) error {
	return a.s.Audit(ctx, store.AuditEntry{
		ID: fmt.Sprintf("%d-%s", time.Now().UnixNano(), a.node), Actor: actor, Action: action, Target: target, Node: a.node, Result: result,
	})
}

// Node returns the hub node.
func (a *App) Node() *hub.Node { return a.node }

// NATS returns the process's NATS connection.
func (a *App) NATS() *nats.Conn { return a.nc }

// Store returns the process's store.
func (a *App) Store() *store.Store { return a.store }

// EmbeddedNATS returns the embedded server, or nil with an external one.
func (a *App) EmbeddedNATS() *server.Server { return a.embedded }

// Handler is the process's HTTP surface.
func (a *App) Handler() http.Handler { return a.handler }

func (a *App) routes() http.Handler {
	mux := http.NewServeMux()
	if a.node != nil {
		mux.Handle("/socket.io/", a.node.Handler())
		mux.Handle("/api/v1/", a.node.APIHandler())
		sec := a.securityAPI()
		for _, route := range []string{"GET /api/v1/alerts", "GET /api/v1/audit", "GET /api/v1/blocks", "DELETE /api/v1/blocks/{ip}"} {
			mux.Handle(route, a.node.Authorized(sec))
		}
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", a.ready)
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.reg, promhttp.HandlerOpts{Registry: a.reg}))
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "not found"})
	})
	return recoverer(a.log, accessLog(a.log, securityHeaders(mux)))
}

func (a *App) ready(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	checks := map[string]string{"nats": "ok", "database": "ok"}
	status := http.StatusOK
	if !a.nc.IsConnected() {
		checks["nats"], status = a.nc.Status().String(), http.StatusServiceUnavailable
	}
	if err := a.store.Ping(ctx); err != nil {
		checks["database"], status = "unreachable", http.StatusServiceUnavailable
		a.log.Warn().Err(err).Msg("readiness: database unreachable")
	}
	writeJSON(w, status, checks)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// Serve serves HTTP on ln until ctx is done, then drains: it stops
// accepting, closes client connections (they reconnect elsewhere), and
// returns within the shutdown timeout.
func (a *App) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           a.handler,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          nil,
	}
	var ul *upgradeListener
	if a.node != nil {
		ul = newUpgradeListener(ln, "/socket.io/", a.handler, srv.ReadHeaderTimeout, a.log)
		ln = ul
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	a.log.Info().Str("addr", ln.Addr().String()).Strs("components", a.cfg.Components).Msg("listening")
	select {
	case err := <-errc:
		return fmt.Errorf("http server: %w", err)
	case <-ctx.Done():
	}
	a.log.Info().Msg("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), a.cfg.ShutdownTimeout)
	defer cancel()
	_ = srv.Shutdown(sctx) // stops accepting; hijacked WebSockets are the node's
	if ul != nil {
		// Upgrades whose head was read before the listener closed reach
		// the node before its Shutdown looks at its connections.
		_ = ul.Wait(sctx)
	}
	if a.node != nil {
		if err := a.node.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
			return err
		}
	}
	return nil
}

// Close releases everything New acquired. It is safe after a failed New.
func (a *App) Close() {
	if a.node != nil {
		ctx, cancel := context.WithTimeout(context.Background(), a.cfg.ShutdownTimeout)
		_ = a.node.Shutdown(ctx)
		cancel()
	}
	if a.stopWorkers != nil {
		a.stopWorkers()
		a.workers.Wait()
	}
	if a.nc != nil {
		_ = a.nc.Drain()
		deadline := time.Now().Add(2 * time.Second)
		for !a.nc.IsClosed() && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		a.nc.Close()
	}
	if a.store != nil {
		_ = a.store.Close()
	}
	if a.embedded != nil {
		a.embedded.Shutdown()
		a.embedded.WaitForShutdown()
	}
}
