// Package testkit is what the tests of several packages share: embedded
// NATS servers with JetStream (random port, data in the test's temporary
// directory), the project's streams, the databases the machine offers,
// CloudEvents envelopes, and polling.
package testkit

import (
	"context"
	"encoding/json"
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/medianest/hub/events"
	"github.com/medianest/hub/internal/bus"
)

// Server starts a NATS server with JetStream for the test and stops it at
// the end.
func Server(tb testing.TB) *server.Server {
	tb.Helper()
	ns, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: tb.TempDir(), NoLog: true, NoSigs: true,
	})
	if err != nil {
		tb.Fatal(err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		tb.Fatal("nats server not ready")
	}
	tb.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	return ns
}

// Connect opens a client connection to ns for the test.
func Connect(tb testing.TB, ns *server.Server) (*nats.Conn, jetstream.JetStream) {
	tb.Helper()
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatal(err)
	}
	return nc, js
}

// Streams starts a server, connects, and creates the project's streams
// and buckets under the default prefix.
func Streams(tb testing.TB) (*nats.Conn, jetstream.JetStream) {
	tb.Helper()
	nc, js := Connect(tb, Server(tb))
	if err := bus.EnsureStreams(context.Background(), js, bus.StreamOptions{}); err != nil {
		tb.Fatal(err)
	}
	return nc, js
}

// Databases are the database URLs to run a store-backed test on: SQLite
// ("") always, PostgreSQL when MEDIANEST_TEST_POSTGRES_DSN is set.
func Databases(tb testing.TB) map[string]string {
	dbs := map[string]string{"sqlite": ""}
	if dsn := os.Getenv("MEDIANEST_TEST_POSTGRES_DSN"); dsn != "" {
		dbs["postgres"] = dsn
	} else {
		tb.Log("MEDIANEST_TEST_POSTGRES_DSN is not set; running on SQLite only")
	}
	return dbs
}

// Envelope is a CloudEvents envelope of a domain event, as JSON.
func Envelope(tb testing.TB, domain, name string, data any) []byte {
	tb.Helper()
	ev, err := events.New("test", domain, name, "", data)
	if err != nil {
		tb.Fatal(err)
	}
	b, _ := json.Marshal(ev)
	return b
}

// Publish stores a domain event on its stream and returns its id.
func Publish(tb testing.TB, js jetstream.JetStream, domain, name string, data any) string {
	tb.Helper()
	raw := Envelope(tb, domain, name, data)
	if _, err := js.Publish(context.Background(), events.Subjects{}.Event(domain, name), raw); err != nil {
		tb.Fatal(err)
	}
	var ev events.Event
	_ = json.Unmarshal(raw, &ev)
	return ev.ID
}

// WaitFor polls fn until it returns nil, failing the test after timeout.
func WaitFor(tb testing.TB, timeout time.Duration, fn func() error) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("condition not met within %s: %v", timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
