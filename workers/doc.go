// Package workers holds MediaNest's JetStream workers, one sub-package
// each. Workers consume durable streams, persist what must last through
// bun, and act on hub nodes only through NATS subjects: no worker imports
// the hub.
package workers
