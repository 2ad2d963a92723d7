// Package socketio is the Socket.io v5 layer of the hub, on top of
// [engineio]: namespaces multiplexed over one connection, connect
// middleware, events with acknowledgements in both directions, and rooms.
//
// It knows nothing of MediaNest: authentication, policy and the NATS relay
// are hooks the hub package installs. The same code serves the hub and the
// protocol conformance server.
//
// Concurrency: namespaces are registered before [Server.ServeHTTP] is first
// called and are fixed afterwards. Event handlers run on the connection's
// reader goroutine, one at a time per connection; a handler that waits on
// the network must hand the work to another goroutine. Emits, joins,
// leaves and broadcasts are safe from any goroutine; a broadcast encodes its
// frame once and never blocks on a slow socket. Room registries are sharded.
package socketio
