package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/medianest/hub/hub"
	"github.com/medianest/hub/hub/auth"
	"github.com/medianest/hub/internal/app"
	"github.com/medianest/hub/internal/config"
	"github.com/medianest/hub/internal/store"
)

func newRootCmd(lookup config.LookupFunc) *cobra.Command {
	root := &cobra.Command{
		Use:           "medianest-hub",
		Short:         "MediaNest's realtime hub: Socket.io clients, NATS backends",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newServeCmd(lookup), newTokenCmd(lookup), newConfigCmd(lookup), newVersionCmd(), newBenchCmd(), newEventsCmd(lookup))
	return root
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintln(cmd.OutOrStdout(), "medianest-hub", version)
			return err
		},
	}
}

func newConfigCmd(lookup config.LookupFunc) *cobra.Command {
	c := &cobra.Command{Use: "config", Short: "Inspect the configuration"}
	c.AddCommand(&cobra.Command{
		Use:   "check",
		Short: "Validate the MEDIANEST_* environment and exit",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(lookup)
			if err != nil {
				return fmt.Errorf("invalid configuration:\n%w", err)
			}
			nats := "embedded"
			if cfg.NATSURL != "" {
				nats = "external"
			}
			db := "sqlite in " + cfg.DataDir
			if cfg.DatabaseURL != "" {
				db = strings.SplitN(cfg.DatabaseURL, "://", 2)[0]
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "configuration ok: listen %s, nats %s, database %s, session mode %s\n",
				cfg.ListenAddr, nats, db, cfg.SessionMode)
			return err
		},
	})
	return c
}

func newTokenCmd(lookup config.LookupFunc) *cobra.Command {
	var o auth.MintOptions
	var role string
	var noSession bool
	c := &cobra.Command{
		Use:   "token",
		Short: "Mint a development token signed with MEDIANEST_JWT_SECRET",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(lookup)
			if err != nil {
				return fmt.Errorf("invalid configuration:\n%w", err)
			}
			o.Issuer, o.Audience = cfg.JWTIssuer, cfg.JWTAudience
			if o.TTL > cfg.TokenMaxLifetime {
				return fmt.Errorf("--ttl %s is longer than MEDIANEST_TOKEN_MAX_LIFETIME (%s): the hub would refuse the token", o.TTL, cfg.TokenMaxLifetime)
			}
			for _, r := range strings.Split(role, ",") {
				if r = strings.TrimSpace(r); r != "" {
					o.Roles = append(o.Roles, r)
				}
			}
			var st *store.Store
			if !noSession {
				// The token's session must exist for strict mode: store it
				// where the hub looks sessions up.
				if st, err = store.Open(cmd.Context(), cfg.DatabaseURL, cfg.DataDir); err != nil {
					return err
				}
				defer st.Close()
			}
			tok, err := mintWithSession(cmd.Context(), st, []byte(cfg.JWTSecret), o)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), tok)
			return err
		},
	}
	f := c.Flags()
	f.StringVar(&o.UserID, "user", "dev-user", "user id (sub)")
	f.StringVar(&role, "role", "user", "role, or a comma-separated list of roles")
	f.StringVar(&o.SessionID, "session", "", "session id (sid)")
	f.StringVar(&o.Email, "email", "", "email claim")
	f.StringVar(&o.Name, "name", "", "name claim")
	f.StringVar(&o.JTI, "jti", "", "token id (jti)")
	f.DurationVar(&o.TTL, "ttl", time.Hour, "lifetime")
	f.BoolVar(&noSession, "no-session", false, "do not store a session for the token (stateless mode only)")
	return c
}

// mintWithSession mints a token and, when st is set, stores its session
// (a new random id unless o names one) so strict mode admits it.
func mintWithSession(ctx context.Context, st *store.Store, secret []byte, o auth.MintOptions) (string, error) {
	if st != nil && o.SessionID == "" {
		o.SessionID = "dev-" + randomSecret()[:16]
	}
	tok, err := auth.Mint(secret, o)
	if err != nil {
		return "", err
	}
	if st == nil {
		return tok, nil
	}
	ttl := o.TTL
	if ttl == 0 {
		ttl = time.Hour
	}
	sum := sha256.Sum256([]byte(tok))
	sha := hex.EncodeToString(sum[:])
	err = st.CreateSession(ctx, &store.Session{
		ID: o.SessionID, UserID: o.UserID, TokenSHA256: &sha, ExpiresAt: time.Now().Add(ttl).UTC(), UserAgent: "medianest-hub token",
	})
	if err != nil {
		return "", fmt.Errorf("store the token's session: %w", err)
	}
	return tok, nil
}

func newServeCmd(lookup config.LookupFunc) *cobra.Command {
	var dev bool
	var listen string
	c := &cobra.Command{
		Use:   "serve",
		Short: "Run the hub with every component in one process",
		Long: "Run the hub. With no MEDIANEST_NATS_URL it starts an embedded NATS server with JetStream,\n" +
			"and with no MEDIANEST_DATABASE_URL it keeps SQLite in MEDIANEST_DATA_DIR.\n" +
			"--dev makes an ephemeral JWT secret and prints sample tokens and a client snippet.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			env := lookup
			var devSecret string
			if dev {
				devSecret = randomSecret()
				env = func(k string) (string, bool) {
					switch k {
					case "MEDIANEST_JWT_SECRET":
						return devSecret, true
					case "MEDIANEST_LOG_FORMAT":
						if v, ok := lookup(k); ok {
							return v, true
						}
						return "console", true
					}
					return lookup(k)
				}
			}
			cfg, err := config.Load(env)
			if err != nil {
				return fmt.Errorf("invalid configuration:\n%w", err)
			}
			if listen != "" {
				cfg.ListenAddr = listen
			}
			feed := &hub.LogFeed{}
			log := newLogger(cfg, feed)
			if cfg.PprofAddr != "" {
				go servePprof(cfg.PprofAddr, log)
			}
			// No TCP keep-alive probes: Engine.IO's ping finds a dead peer
			// (within ping interval + timeout) and net/http closes idle
			// connections; the probes' four setsockopt calls were a tenth
			// of the system calls of accepting a connection.
			lc := net.ListenConfig{KeepAlive: -1}
			ln, err := lc.Listen(cmd.Context(), "tcp", cfg.ListenAddr)
			if err != nil {
				return fmt.Errorf("listen on MEDIANEST_LISTEN_ADDR %s: %w", cfg.ListenAddr, err)
			}
			a, err := app.New(cmd.Context(), cfg, app.Options{Logger: log, LogFeed: feed})
			if err != nil {
				ln.Close()
				return err
			}
			defer a.Close()
			if dev {
				if err := printDevBanner(cmd.Context(), cmd.OutOrStdout(), a.Store(), cfg, ln.Addr()); err != nil {
					return err
				}
			}
			return a.Serve(cmd.Context(), ln)
		},
	}
	c.Flags().BoolVar(&dev, "dev", false, "development mode: ephemeral secret, sample tokens, console logs")
	c.Flags().StringVar(&listen, "listen", "", "listen address (overrides MEDIANEST_LISTEN_ADDR)")
	return c
}

func randomSecret() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// newLogger writes JSON (or, for console format, readable lines) to stderr
// and always JSON to feed, the /system log stream.
func newLogger(cfg config.Config, feed io.Writer) zerolog.Logger {
	level, err := zerolog.ParseLevel(cfg.LogLevel)
	if err != nil {
		level = zerolog.InfoLevel
	}
	var out io.Writer = io.MultiWriter(os.Stderr, feed)
	if cfg.LogFormat == "console" {
		out = teeWriter{console: zerolog.ConsoleWriter{Out: os.Stderr, TimeFormat: time.TimeOnly}, rest: feed}
	}
	return zerolog.New(out).Level(level).With().Timestamp().Logger()
}

// teeWriter writes human-readable lines to the console and the raw JSON
// to rest.
type teeWriter struct {
	console zerolog.ConsoleWriter
	rest    io.Writer
}

func (t teeWriter) Write(p []byte) (int, error) {
	_, _ = t.rest.Write(p)
	return t.console.Write(p)
}

func printDevBanner(ctx context.Context, w io.Writer, st *store.Store, cfg config.Config, addr net.Addr) error {
	port := "8080"
	if ta, ok := addr.(*net.TCPAddr); ok {
		port = fmt.Sprint(ta.Port)
	}
	mint := func(user, role, name string) (string, error) {
		return mintWithSession(ctx, st, []byte(cfg.JWTSecret), auth.MintOptions{
			UserID: user, Roles: []string{role}, Name: name, Email: user + "@example.test",
			Issuer: cfg.JWTIssuer, Audience: cfg.JWTAudience, TTL: 24 * time.Hour,
		})
	}
	admin, err := mint("dev-admin", "admin", "Dev Admin")
	if err != nil {
		return err
	}
	user, err := mint("dev-user", "user", "Dev User")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, `
MediaNest Hub is running in development mode (ephemeral secret; tokens are valid for 24h).

  admin token: %s
  user token:  %s

Paste into a Node.js REPL with socket.io-client installed (npm i socket.io-client):

const { io } = require("socket.io-client");
const socket = io("http://localhost:%s/media", { auth: { token: "%s" }, transports: ["websocket"] });
socket.on("welcome", console.log); socket.on("pong", console.log); socket.emit("ping", { hello: "hub" });

`, admin, user, port, user)
	return err
}

// servePprof serves the Go profiler on its own listener, for operators
// chasing a performance problem (MEDIANEST_PPROF_ADDR; keep it on loopback).
func servePprof(addr string, log zerolog.Logger) {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	log.Info().Str("addr", addr).Msg("pprof listening")
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	if err := srv.ListenAndServe(); err != nil {
		log.Error().Err(err).Msg("pprof server stopped")
	}
}
