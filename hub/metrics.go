package hub

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the node's Prometheus collectors, all named medianest_*.
type metrics struct {
	sockets       *prometheus.GaugeVec
	eventsIn      *prometheus.CounterVec
	eventsOut     *prometheus.CounterVec
	authFailures  *prometheus.CounterVec
	rateLimited   *prometheus.CounterVec
	refused       *prometheus.CounterVec
	relayLatency  prometheus.Histogram
	relayIn       *prometheus.CounterVec
	publishErrors *prometheus.CounterVec
	recvRequests  *prometheus.CounterVec

	expired        prometheus.Counter
	refreshes      *prometheus.CounterVec
	revokedSockets prometheus.Counter
	sessionEvents  *prometheus.CounterVec
	securityEvents *prometheus.CounterVec
}

// nsMetrics are a namespace's series, resolved once: the per-event and
// per-broadcast paths do not look labels up.
type nsMetrics struct {
	sockets             prometheus.Gauge
	eventsIn, eventsOut prometheus.Counter
}

func (m *metrics) forNamespace(ns string) *nsMetrics {
	return &nsMetrics{
		sockets:   m.sockets.WithLabelValues(ns),
		eventsIn:  m.eventsIn.WithLabelValues(ns),
		eventsOut: m.eventsOut.WithLabelValues(ns),
	}
}

func newMetrics(reg prometheus.Registerer, n *Node) *metrics {
	m := &metrics{
		sockets: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "medianest_connections", Help: "Sockets connected, by namespace.",
		}, []string{"namespace"}),
		eventsIn: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "medianest_events_in_total", Help: "Client events received, by namespace.",
		}, []string{"namespace"}),
		eventsOut: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "medianest_events_out_total", Help: "Events queued to clients (one per socket), by namespace.",
		}, []string{"namespace"}),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "medianest_auth_failures_total", Help: "Refused namespace connections, by code.",
		}, []string{"code"}),
		rateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "medianest_rate_limited_total", Help: "Rate-limit refusals, by limit (connect or events).",
		}, []string{"limit"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "medianest_bad_input_total", Help: "Client input refused with an error event, by reason.",
		}, []string{"reason"}),
		relayLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "medianest_relay_latency_seconds",
			Help:    "Time from a hub.emit publish (its ts field) to local delivery.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1},
		}),
		relayIn: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "medianest_relay_messages_total", Help: "hub.emit messages received from NATS, by result.",
		}, []string{"result"}),
		publishErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "medianest_nats_publish_errors_total", Help: "Failed NATS publishes, by subject kind.",
		}, []string{"kind"}),
		recvRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "medianest_backend_requests_total", Help: "Client events handed to backends on hub.recv, by result.",
		}, []string{"result"}),
		expired: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "medianest_token_expired_disconnects_total", Help: "Sockets closed because their token expired without auth:refresh.",
		}),
		refreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "medianest_token_refreshes_total", Help: "auth:refresh requests, by result.",
		}, []string{"result"}),
		revokedSockets: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "medianest_session_disconnects_total", Help: "Sockets closed by session revocation or logout.",
		}),
		sessionEvents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "medianest_session_events_total", Help: "Session events the node applied to its cache, by result.",
		}, []string{"result"}),
		securityEvents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "medianest_security_events_total", Help: "Security events the node emitted, by result (published, failed, dropped).",
		}, []string{"result"}),
	}
	eio := n.sio.Engine().Stats()
	sio := n.sio.Stats()
	counter := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, f)
	}
	reg.MustRegister(
		m.sockets, m.eventsIn, m.eventsOut, m.authFailures, m.rateLimited, m.refused,
		m.relayLatency, m.relayIn, m.publishErrors, m.recvRequests,
		m.expired, m.refreshes, m.revokedSockets, m.sessionEvents, m.securityEvents,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "medianest_transport_connections", Help: "Open Engine.IO connections."},
			func() float64 { return float64(eio.Open.Load()) }),
		counter("medianest_transport_connections_total", "Engine.IO connections opened.", func() float64 { return float64(eio.Opened.Load()) }),
		counter("medianest_slow_consumer_disconnects_total", "Connections closed because their send queue overflowed.", func() float64 { return float64(eio.SlowConsumers.Load()) }),
		counter("medianest_oversized_frames_total", "Connections closed for a frame over maxPayload.", func() float64 { return float64(eio.Oversized.Load()) }),
		counter("medianest_ping_timeouts_total", "Connections closed for a missed pong.", func() float64 { return float64(eio.PingTimeouts.Load()) }),
		counter("medianest_bad_frames_total", "Connections closed for a malformed Engine.IO or Socket.io packet.", func() float64 {
			return float64(eio.BadFrames.Load() + sio.BadPackets.Load())
		}),
		counter("medianest_binary_refused_total", "Binary packets refused.", func() float64 { return float64(sio.BinaryRefused.Load()) }),
		counter("medianest_invalid_namespace_total", "CONNECTs to unknown namespaces.", func() float64 { return float64(sio.UnknownNSP.Load()) }),
	)
	return m
}
