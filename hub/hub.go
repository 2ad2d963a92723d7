// Package hub is a MediaNest Hub node: it serves Socket.io clients on the
// [socketio] layer, authenticates every namespace CONNECT with a JWT,
// admits sockets by role (see [Policy]), serves the built-in events of
// DESIGN §4, and relays through NATS: hub.emit subjects deliver to local
// rooms, other client events go to the backends on hub.recv, and hub.ctl
// operations act on the sockets of every node.
//
// A Node is created with [New], started with [Node.Start] and stopped with
// [Node.Shutdown]; all its methods are safe for concurrent use.
package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/medianest/hub/events"
	"github.com/medianest/hub/hub/auth"
	"github.com/medianest/hub/hub/engineio"
	"github.com/medianest/hub/hub/sessions"
	"github.com/medianest/hub/hub/socketio"
	"github.com/medianest/hub/internal/cluster"
	"github.com/medianest/hub/schema"
)

// Config configures a [Node]. Zero values take the documented defaults.
type Config struct {
	// NodeID names the node on the bus; default a random id.
	NodeID string
	// SubjectPrefix is the first subject token; default "medianest".
	SubjectPrefix string
	// Engine is the transport configuration (ping, maxPayload, queue).
	Engine engineio.Config
	// AllowedOrigins are the browser origins admitted besides same-origin
	// and Origin-less clients; "*" admits any.
	AllowedOrigins []string
	// TrustedProxies are the peers whose X-Forwarded-For is believed.
	TrustedProxies []netip.Prefix
	// ConnectPerMinute is the per-IP connection rate; default 10.
	ConnectPerMinute int
	// EventsPerMinute is the per-socket event rate; default 100.
	EventsPerMinute int
	// AckTimeout bounds a backend's reply to a client request; default 5s.
	AckTimeout time.Duration
	// ClusterTimeout bounds a cluster-wide operation's gathering of
	// replies; default 500ms.
	ClusterTimeout time.Duration
	// HeartbeatInterval is how often the node announces itself; default 5s.
	HeartbeatInterval time.Duration
	// Policies are the namespaces; default [DefaultPolicies].
	Policies []Policy
	// ExpiryWarning is how long before a token expires the socket gets
	// auth:expiring; default 60s.
	ExpiryWarning time.Duration
	// ExpiryGrace is how long after exp an unrefreshed socket is
	// disconnected; default 5s.
	ExpiryGrace time.Duration
}

func (c *Config) setDefaults() {
	if c.NodeID == "" {
		c.NodeID = engineio.NewID()[:12]
	}
	if c.SubjectPrefix == "" {
		c.SubjectPrefix = events.DefaultPrefix
	}
	if c.ConnectPerMinute <= 0 {
		c.ConnectPerMinute = 10
	}
	if c.EventsPerMinute <= 0 {
		c.EventsPerMinute = 100
	}
	if c.AckTimeout <= 0 {
		c.AckTimeout = 5 * time.Second
	}
	if c.ClusterTimeout <= 0 {
		c.ClusterTimeout = 500 * time.Millisecond
	}
	if c.HeartbeatInterval <= 0 {
		c.HeartbeatInterval = 5 * time.Second
	}
	if len(c.Policies) == 0 {
		c.Policies = DefaultPolicies()
	}
	if c.ExpiryWarning <= 0 {
		c.ExpiryWarning = time.Minute
	}
	if c.ExpiryGrace <= 0 {
		c.ExpiryGrace = 5 * time.Second
	}
}

// Auditor records administrative actions durably.
type Auditor interface {
	Audit(ctx context.Context, actor, action, target, result string) error
}

// Deps are the node's collaborators.
type Deps struct {
	NATS     *nats.Conn     // required
	Verifier *auth.Verifier // required
	// Sessions is the session view; nil means stateless with no lookup.
	Sessions *sessions.Cache
	// JetStream, if set, feeds Sessions from the session stream and
	// backs the revocation and session API.
	JetStream jetstream.JetStream
	// Validator checks session events; required with JetStream.
	Validator *schema.Validator
	// Blocks are the IP blocks in force at start (persisted by the
	// security worker); later ones arrive on hub.ctl.block.
	Blocks []events.BlockMessage
	// BlockSource, if set, is read every minute so a block or lift the
	// node missed on the bus (while reconnecting, say) still takes effect.
	BlockSource func(ctx context.Context) ([]events.BlockMessage, error)
	Logger      zerolog.Logger
	// Registerer receives the node's metrics; nil means a private registry.
	Registerer prometheus.Registerer
	// Auditor, if set, records admin actions.
	Auditor Auditor
	// LogFeed, if set, is the process log stream that /system sockets may
	// subscribe to.
	LogFeed *LogFeed
}

// Node is one hub node.
type Node struct {
	cfg      Config
	log      zerolog.Logger
	nc       *nats.Conn
	verifier *auth.Verifier
	auditor  Auditor
	subj     events.Subjects
	sio      *socketio.Server
	ns       map[string]*socketio.Namespace
	policies map[string]Policy
	origins  originChecker
	connRate *ipLimiter
	metrics  *metrics
	nsm      map[string]*nsMetrics // by namespace; fixed after New
	started  time.Time
	logFeed  *LogFeed
	blockSrc func(ctx context.Context) ([]events.BlockMessage, error)

	peers *cluster.Peers

	usersMu sync.Mutex
	users   map[string]int

	sessions        *sessions.Cache
	js              jetstream.JetStream
	validator       *schema.Validator
	closed          closedLog
	sec             *secPublisher
	blocks          blockList
	sessionConsumer jetstream.ConsumeContext
	appliedSeq      atomic.Uint64 // last session stream sequence applied

	subs     []*nats.Subscription
	stop     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup
}

// New builds a node; call [Node.Start] before serving.
func New(cfg Config, d Deps) (*Node, error) {
	if d.NATS == nil || d.Verifier == nil {
		return nil, errors.New("hub: NATS connection and verifier are required")
	}
	if d.JetStream != nil && d.Validator == nil {
		return nil, errors.New("hub: a validator is required with JetStream")
	}
	if d.Sessions == nil {
		d.Sessions = sessions.New(sessions.Stateless, nil, 24*time.Hour)
	}
	cfg.setDefaults()
	n := &Node{
		cfg:       cfg,
		log:       d.Logger.With().Str("node", cfg.NodeID).Logger(),
		nc:        d.NATS,
		verifier:  d.Verifier,
		auditor:   d.Auditor,
		subj:      events.Subjects{Prefix: cfg.SubjectPrefix},
		ns:        make(map[string]*socketio.Namespace),
		policies:  make(map[string]Policy),
		origins:   newOriginChecker(cfg.AllowedOrigins),
		connRate:  newIPLimiter(cfg.ConnectPerMinute),
		started:   time.Now(),
		peers:     cluster.NewPeers(cfg.NodeID, 3*cfg.HeartbeatInterval),
		users:     make(map[string]int),
		stop:      make(chan struct{}),
		logFeed:   d.LogFeed,
		sessions:  d.Sessions,
		js:        d.JetStream,
		validator: d.Validator,
		closed:    closedLog{m: make(map[string]*closedRecord)},
		blocks:    blockList{m: make(map[string]time.Time)},
	}
	for _, b := range d.Blocks {
		n.blocks.add(b.IP, b.Until)
	}
	n.sio = socketio.NewServer(cfg.Engine, n.log)
	n.sio.OnOpen = n.onOpen
	n.sio.OnClose = n.onClose
	n.sio.Guard = n.guard
	for _, p := range cfg.Policies {
		if _, dup := n.policies[p.Namespace]; dup || p.Namespace == "" || p.Namespace[0] != '/' {
			return nil, fmt.Errorf("hub: policy namespace %q: must start with / and appear once", p.Namespace)
		}
		n.policies[p.Namespace] = p
		nsp := n.sio.Of(p.Namespace)
		n.ns[p.Namespace] = nsp
		n.setupNamespace(nsp, p)
	}
	reg := d.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	n.metrics = newMetrics(reg, n)
	n.nsm = make(map[string]*nsMetrics, len(n.ns))
	for name := range n.ns {
		n.nsm[name] = n.metrics.forNamespace(name)
	}
	if d.JetStream != nil {
		sec, err := newSecPublisher(d.NATS, n.subj, "medianest-hub/"+cfg.NodeID, 8192, n.log, func() {
			n.metrics.securityEvents.WithLabelValues("failed").Inc()
		})
		if err != nil {
			return nil, fmt.Errorf("hub: security publisher: %w", err)
		}
		sec.published = func() { n.metrics.securityEvents.WithLabelValues("published").Inc() }
		sec.lost = func() { n.metrics.securityEvents.WithLabelValues("dropped").Inc() }
		n.sec = sec
	}
	return n, nil
}

// ID is the node id.
func (n *Node) ID() string { return n.cfg.NodeID }

// Handler serves /socket.io/.
func (n *Node) Handler() http.Handler { return n.sio }

// Connections is the number of open transport connections on this node.
func (n *Node) Connections() int { return n.sio.Engine().Len() }

// Ready reports whether the node can serve: its NATS connection is up.
func (n *Node) Ready() error {
	if !n.nc.IsConnected() {
		return fmt.Errorf("nats: %s", n.nc.Status())
	}
	return nil
}

// Start subscribes to the node's subjects and starts its housekeeping.
func (n *Node) Start(ctx context.Context) error {
	subs := []struct {
		subject string
		cb      nats.MsgHandler
	}{
		{n.subj.EmitAll(), n.onEmit},
		{n.subj.CtlAll(), n.onCtl},
		{n.subj.Alerts(), n.onAlert},
	}
	for _, s := range subs {
		sub, err := n.nc.Subscribe(s.subject, s.cb)
		if err != nil {
			n.unsubscribe()
			return fmt.Errorf("hub: subscribe %s: %w", s.subject, err)
		}
		// A burst of relayed messages may queue; never drop them silently.
		_ = sub.SetPendingLimits(1<<20, 256<<20)
		n.subs = append(n.subs, sub)
	}
	fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := n.nc.FlushWithContext(fctx); err != nil {
		n.unsubscribe()
		return fmt.Errorf("hub: flush subscriptions: %w", err)
	}
	n.sec.start()
	if err := n.consumeSessions(ctx); err != nil {
		n.unsubscribe()
		return err
	}
	if n.logFeed != nil {
		n.logFeed.attach(n.forwardLog)
	}
	n.announce(true, false)
	n.wg.Add(1)
	go n.housekeeping()
	n.log.Info().Strs("namespaces", n.namespaceNames()).Msg("hub node started")
	return nil
}

func (n *Node) namespaceNames() []string {
	out := make([]string, 0, len(n.cfg.Policies))
	for _, p := range n.cfg.Policies {
		out = append(out, p.Namespace)
	}
	return out
}

func (n *Node) unsubscribe() {
	for _, s := range n.subs {
		_ = s.Unsubscribe()
	}
	n.subs = nil
}

func (n *Node) housekeeping() {
	defer n.wg.Done()
	beat := time.NewTicker(n.cfg.HeartbeatInterval)
	defer beat.Stop()
	sweep := time.NewTicker(time.Minute)
	defer sweep.Stop()
	for {
		select {
		case <-n.stop:
			return
		case <-beat.C:
			n.announce(false, false)
		case now := <-sweep.C:
			n.connRate.sweep(now)
			n.sessions.Sweep(now)
			n.blocks.sweep(now)
			n.resyncBlocks()
			n.sweepClosed(now)
		}
	}
}

// Shutdown stops accepting, closes every client connection with a "going
// away" close frame so clients reconnect to another node, and stops the
// node's subscriptions. It returns when all connections are gone or ctx is
// done. It is idempotent.
func (n *Node) Shutdown(ctx context.Context) error {
	first := false
	n.stopOnce.Do(func() { first = true; close(n.stop) })
	if !first {
		return nil
	}
	if n.logFeed != nil {
		n.logFeed.attach(nil)
	}
	n.announce(false, true)
	n.sio.Shutdown(ctx.Done())
	n.sec.close(ctx)
	if n.sessionConsumer != nil {
		n.sessionConsumer.Stop()
	}
	n.unsubscribe()
	n.wg.Wait()
	n.log.Info().Msg("hub node stopped")
	return ctx.Err()
}

// resyncBlocks makes the block list what the database says.
func (n *Node) resyncBlocks() {
	if n.blockSrc == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	blocks, err := n.blockSrc(ctx)
	if err != nil {
		n.log.Warn().Err(err).Msg("cannot resync IP blocks; keeping the current list")
		return
	}
	n.blocks.replace(blocks)
}

// trackUser counts a user's sockets on this node.
func (n *Node) trackUser(id string, delta int) {
	n.usersMu.Lock()
	defer n.usersMu.Unlock()
	if c := n.users[id] + delta; c > 0 {
		n.users[id] = c
	} else {
		delete(n.users, id)
	}
}

func (n *Node) userIDs() []string {
	n.usersMu.Lock()
	defer n.usersMu.Unlock()
	out := make([]string, 0, len(n.users))
	for id := range n.users {
		out = append(out, id)
	}
	return out
}

func (n *Node) userCount() int {
	n.usersMu.Lock()
	defer n.usersMu.Unlock()
	return len(n.users)
}

// marshal encodes v, which is always of a marshallable type here.
func marshal(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		return json.RawMessage(`null`)
	}
	return b
}
