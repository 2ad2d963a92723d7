// Package events holds MediaNest Hub's public wire contract on NATS: subject
// names and their token escaping, the CloudEvents envelope, and the payloads
// that hub nodes, backends and workers exchange on the hub.* subjects.
//
// It imports nothing else from this module, so backends written in Go can
// depend on it alone. Everything here is safe for concurrent use.
package events
