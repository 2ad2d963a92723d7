// Package natsembed runs the in-process NATS server with JetStream that
// `medianest-hub serve` uses when no external NATS is configured.
package natsembed

import (
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// Options configure the embedded server.
type Options struct {
	// StoreDir holds JetStream data; required.
	StoreDir string
	// Listen is a host:port to accept TCP clients on ("127.0.0.1:-1" picks a
	// free port); empty keeps the server in-process only.
	Listen string
	// ServerName names the server in JetStream; default "medianest-embedded".
	ServerName string
}

// Start starts an embedded NATS server with JetStream and waits until it
// accepts clients.
func Start(o Options) (*server.Server, error) {
	if o.StoreDir == "" {
		return nil, fmt.Errorf("natsembed: store dir is required")
	}
	opts := &server.Options{
		ServerName: o.ServerName,
		JetStream:  true,
		StoreDir:   filepath.Clean(o.StoreDir),
		NoSigs:     true,
		NoLog:      true,
		MaxPayload: 8 << 20,
	}
	if opts.ServerName == "" {
		opts.ServerName = "medianest-embedded"
	}
	if o.Listen == "" {
		opts.DontListen = true
	} else {
		host, port, err := net.SplitHostPort(o.Listen)
		if err != nil {
			return nil, fmt.Errorf("natsembed: listen %q: %w", o.Listen, err)
		}
		p, err := strconv.Atoi(port)
		if err != nil {
			return nil, fmt.Errorf("natsembed: listen %q: bad port: %w", o.Listen, err)
		}
		if host == "" {
			// The embedded server has no authentication: listen on
			// loopback unless an address is named explicitly.
			host = "127.0.0.1"
		}
		opts.Host, opts.Port = host, p
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("natsembed: new server: %w", err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		return nil, fmt.Errorf("natsembed: server not ready within 10s")
	}
	return ns, nil
}

// Connect opens an in-process client connection to ns.
func Connect(ns *server.Server, name string, extra ...nats.Option) (*nats.Conn, error) {
	opts := append([]nats.Option{nats.InProcessServer(ns), nats.Name(name)}, extra...)
	nc, err := nats.Connect("", opts...)
	if err != nil {
		return nil, fmt.Errorf("natsembed: connect in-process: %w", err)
	}
	return nc, nil
}
