package bus

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func TestLease(t *testing.T) {
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	defer ns.Shutdown()
	if !ns.ReadyForConnections(5 * time.Second) {
		t.Fatal("nats not ready")
	}
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx := context.Background()

	a, err := Acquire(ctx, js, "worker", "a", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	// A second holder waits while the first renews.
	wctx, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
	if _, err := Acquire(wctx, js, "worker", "b", time.Second); err == nil {
		t.Fatal("two holders at once")
	}
	cancel()
	if a.Context().Err() != nil {
		t.Fatal("the first holder lost a lease it renews")
	}
	// Released, it is taken at once.
	a.Release()
	bctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	b, err := Acquire(bctx, js, "worker", "b", time.Second)
	if err != nil {
		t.Fatalf("after release: %v", err)
	}
	// A stale holder's release does not delete the new holder's lease.
	a.Release()
	kv, _ := js.KeyValue(ctx, LeaseBucket+"worker")
	e, err := kv.Get(ctx, "worker")
	if err != nil || string(e.Value()) != "b" {
		t.Fatalf("lease after a stale release: %v %v", e, err)
	}
	b.Release()
}
