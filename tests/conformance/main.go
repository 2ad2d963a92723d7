// Command conformance serves the hub's own Engine.IO and Socket.io layers
// with the handlers that the public Engine.IO and Socket.io protocol test
// suites expect, so those suites can be run against this implementation:
//
//	go run ./tests/conformance -addr 127.0.0.1:3000
//
// /engine.io/ is a raw Engine.IO echo (text and binary). /socket.io/ has
// namespaces "/" and "/custom": any auth is accepted and echoed back as an
// "auth" event right after the CONNECT reply; "message" is echoed as
// "message-back"; "message-with-ack" is acknowledged with its arguments;
// any other namespace is refused with {"message":"Invalid namespace"}.
// pingInterval is 300ms and pingTimeout 200ms, as the suites expect.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/medianest/hub/hub/engineio"
	"github.com/medianest/hub/hub/socketio"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:3000", "listen address")
	flag.Parse()
	log := zerolog.New(zerolog.ConsoleWriter{Out: os.Stderr}).With().Timestamp().Logger()
	h, shutdown := newHandler(log)
	srv := &http.Server{Addr: *addr, Handler: h, ReadHeaderTimeout: 5 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		shutdown()
	}()
	log.Info().Str("addr", *addr).Msg("conformance server listening")
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintln(os.Stderr, "conformance:", err)
		os.Exit(1)
	}
}

// conformanceConfig is the transport configuration the suites expect.
var conformanceConfig = engineio.Config{
	PingInterval: 300 * time.Millisecond,
	PingTimeout:  200 * time.Millisecond,
	MaxPayload:   1_000_000,
}

// newHandler returns the server's routes and a function that closes every
// connection.
func newHandler(log zerolog.Logger) (http.Handler, func()) {
	eio := engineio.NewServer(conformanceConfig, echo{}, log)
	sio := socketio.NewServer(conformanceConfig, log)
	for _, name := range []string{"/", "/custom"} {
		ns := sio.Of(name)
		ns.Middleware = func(s *socketio.Socket, auth json.RawMessage) error {
			if len(auth) == 0 {
				auth = json.RawMessage(`{}`)
			}
			s.Data = auth
			return nil
		}
		ns.OnConnect = func(s *socketio.Socket) { s.Emit("auth", s.Data.(json.RawMessage)) }
		ns.On("message", func(s *socketio.Socket, args []json.RawMessage, _ socketio.Ack) {
			vals := make([]any, len(args))
			for i, a := range args {
				vals[i] = a
			}
			s.Emit("message-back", vals...)
		})
		ns.On("message-with-ack", func(_ *socketio.Socket, args []json.RawMessage, ack socketio.Ack) {
			if ack != nil {
				ack(args...)
			}
		})
	}
	mux := http.NewServeMux()
	mux.Handle("/engine.io/", eio)
	mux.Handle("/socket.io/", sio)
	return mux, func() {
		done := make(chan struct{})
		go func() { time.Sleep(time.Second); close(done) }()
		eio.Shutdown(done)
		sio.Shutdown(done)
	}
}

// echo is the raw Engine.IO handler: every message comes back as is.
type echo struct{}

func (echo) Open(*engineio.Conn, *http.Request) {}

func (echo) Message(c *engineio.Conn, data []byte) {
	c.Send(append([]byte{'4'}, data...))
}

func (echo) Binary(c *engineio.Conn, data []byte) { c.SendBinary(data) }

func (echo) Close(*engineio.Conn, string) {}
