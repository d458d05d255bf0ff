// Package cluster owns Herald's membership and replication: Serf tells which
// nodes are alive, and owners push their registry deltas to every peer over
// direct gRPC streams, with gap repair and periodic anti-entropy behind them.
// Nodes that leave are reaped at once, failed ones after Config.ReapFailed.
//
// It drives the replication side of package registry through Registry, the
// seam it declares (seam.go). It must never import dnsserver, pushsvc or cmd:
// the agent wires them together.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/serf/serf"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	"github.com/herald-sd/herald/cluster/clusterpb"
)

// Serf tags a node advertises.
const (
	TagGRPC = "grpc"
	TagDNS  = "dns"
)

// eventQueue is the Serf event channel's capacity. Its one reader only
// updates a map and signals, so it keeps up with any burst of events.
const eventQueue = 1024

// ErrNameConflict: another member already uses this node's name.
var ErrNameConflict = errors.New("cluster: node name already in use")

// Member is one Serf member as `herald members` shows it.
type Member struct {
	Name string
	// Addr is the Serf address, host:port.
	Addr string
	// Status is Serf's name for it: alive, leaving, left or failed.
	Status string
	Tags   map[string]string

	// Since is when this node saw the member enter Status; zero if unknown.
	Since time.Time
}

// Cluster is one node's membership and replication. Create it with New, then
// RegisterGRPC on the node's gRPC server, then Start. Leave, then Shutdown.
type Cluster struct {
	cfg     Config
	key     []byte
	reg     Registry
	log     *slog.Logger
	serfLog *serfLog
	names   *nameWatch // who claims this node's name; checked after each join
	metrics *metrics
	auth    *peerAuth

	advertise string // the Serf address peers use, host:port (port 0: the bound one)

	serf atomic.Pointer[serf.Serf] // set in Start; read by Members at any time

	mu      sync.Mutex
	members map[string]*memberState
	started bool
	stopped bool

	// gate orders applies against reaps: applying a remote owner's deltas or
	// state holds it shared, reaping that owner holds it exclusively, so that
	// nothing of a reaped owner is applied after its reap.
	gate sync.RWMutex

	peers *peerSet

	joins  joinState
	linked bool // reconcile only: the last pass had a link to some peer

	reconcileKick chan struct{} // cap 1: membership changed
	repairs       *ownerQueue   // owners with a gap to repair
	syncs         *ownerQueue   // peers to run anti-entropy with ("" = random)
	transfers     *transfers    // full states being received, bounded

	stop       chan struct{}
	baseCtx    context.Context // ends at Shutdown; parent of pulls
	cancelBase context.CancelFunc
	wg         sync.WaitGroup
}

// New fills cfg's zero fields from DefaultConfig, validates it and prepares
// the node. It starts nothing.
func New(cfg Config) (*Cluster, error) {
	cfg.setDefaults()
	key, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	advertise, picked, err := advertiseAddr(cfg.BindAddr, cfg.AdvertiseAddr, privateIP)
	if err != nil {
		return nil, err
	}
	reg := cfg.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	auth, err := newPeerAuth(cfg, key, reg)
	if err != nil {
		return nil, err
	}
	decrypt, err := newDecryptErrors(reg)
	if err != nil {
		return nil, fmt.Errorf("cluster: register metrics: %w", err)
	}
	c := &Cluster{
		cfg:           cfg,
		key:           key,
		advertise:     advertise,
		reg:           cfg.Registry,
		log:           cfg.Logger.With("node", cfg.NodeName),
		metrics:       m,
		auth:          auth,
		members:       map[string]*memberState{},
		reconcileKick: make(chan struct{}, 1),
		repairs:       newOwnerQueue(),
		syncs:         newOwnerQueue(),
		transfers:     newTransfers(cfg.Transfers),
		stop:          make(chan struct{}),
	}
	if err := reg.Register(c.transfers.gauge()); err != nil {
		return nil, fmt.Errorf("cluster: register metrics: %w", err)
	}
	c.baseCtx, c.cancelBase = context.WithCancel(context.Background())
	c.serfLog = &serfLog{log: c.log, decrypt: decrypt}
	c.names = newNameWatch(cfg.NodeName)
	c.peers = newPeerSet(c)
	if picked {
		c.log.Info("bound to every interface: advertising this host's private address to peers (set the advertise address to choose another)", "bind", cfg.BindAddr, "advertise", advertise)
	}
	return c, nil
}

// RegisterGRPC registers the peer replication service on s, which must serve
// on Config.GRPCAddr. Call it before s starts serving.
func (c *Cluster) RegisterGRPC(s grpc.ServiceRegistrar) {
	clusterpb.RegisterPeerServer(s, &peerServer{c: c})
}

// Start creates the Serf agent, starts replication and joins Config.Join,
// retrying with backoff until Config.JoinTimeout or ctx ends. A node whose
// name another member already uses, or that cannot join (a wrong or missing
// encryption key makes every join fail), is shut down and Start returns why.
// With Config.SnapshotPath, Serf also rejoins the members it knew, in the
// background; Config.RetryJoin joins in the background too. However the node
// gets its first peer, it then runs anti-entropy with one.
func (c *Cluster) Start(ctx context.Context) error {
	c.mu.Lock()
	if c.started || c.stopped {
		c.mu.Unlock()
		return errors.New("cluster: Start called twice or after Shutdown")
	}
	c.started = true
	c.mu.Unlock()

	events := make(chan serf.Event, eventQueue)
	sc, err := c.serfConfig(events)
	if err != nil {
		return err
	}
	s, err := serf.Create(sc)
	if err != nil {
		return fmt.Errorf("cluster: start serf on %s: %w", c.cfg.BindAddr, err)
	}
	c.serf.Store(s)
	c.wg.Add(4)
	go c.eventLoop(events)
	go c.reconcileLoop()
	go c.repairLoop()
	go c.syncLoop()

	if len(c.cfg.Join) > 0 {
		if err := c.join(ctx); err != nil {
			c.Shutdown()
			return err
		}
	}
	if len(c.cfg.RetryJoin) > 0 {
		c.wg.Add(1)
		go c.retryJoinLoop()
	}
	c.log.Info("cluster started", "serf", c.LocalAddr(), "members", len(s.Members()))
	return nil
}

func (c *Cluster) serfConfig(events chan serf.Event) (*serf.Config, error) {
	host, port, _ := splitHostPort(c.cfg.BindAddr)
	ml := memberlist.DefaultLANConfig()
	ml.Name = c.cfg.NodeName
	ml.BindAddr, ml.BindPort = host, port
	ml.AdvertiseAddr, ml.AdvertisePort, _ = splitHostPort(c.advertise)
	ml.ProbeInterval = c.cfg.ProbeInterval
	ml.ProbeTimeout = c.cfg.ProbeTimeout
	ml.SuspicionMult = c.cfg.SuspicionMult
	ml.SuspicionMaxTimeoutMult = c.cfg.SuspicionMaxTimeoutMult
	ml.GossipInterval = c.cfg.GossipInterval
	ml.PushPullInterval = c.cfg.PushPullInterval
	// A restarted node may come back on another address under its name.
	ml.DeadNodeReclaimTime = c.cfg.ReapFailed
	ml.Logger = log.New(c.serfLog, "", 0)
	// Serf keeps this hook free while sc.Merge is nil (it would take it for
	// its merge delegate); joinOnce reads it to refuse a duplicate name.
	ml.Alive = c.names
	if c.key != nil {
		kr, err := memberlist.NewKeyring(nil, c.key)
		if err != nil {
			return nil, fmt.Errorf("cluster: keyring: %w", err)
		}
		ml.Keyring = kr
		ml.GossipVerifyIncoming, ml.GossipVerifyOutgoing = true, true
	}

	sc := serf.DefaultConfig()
	sc.NodeName = c.cfg.NodeName
	sc.MemberlistConfig = ml
	sc.Logger = log.New(c.serfLog, "", 0)
	sc.EventCh = events
	sc.ReconnectInterval = c.cfg.ReconnectInterval
	sc.SnapshotPath = c.cfg.SnapshotPath
	// A node leaves on every SIGTERM, so a plain restart must rejoin too;
	// see Config.SnapshotPath.
	sc.RejoinAfterLeave = true
	// Joins refuse a duplicate name themselves (nameWatch); Serf's
	// resolution could shut down the node that legitimately holds the name.
	sc.EnableNameConflictResolution = false
	sc.Tags = map[string]string{}
	if c.cfg.GRPCAddr != "" {
		sc.Tags[TagGRPC] = c.cfg.GRPCAddr
	}
	if c.cfg.DNSAddr != "" {
		sc.Tags[TagDNS] = c.cfg.DNSAddr
	}
	return sc, nil
}

func (c *Cluster) join(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.JoinTimeout)
	defer cancel()
	backoff := 100 * time.Millisecond
	var lastErr error
	for attempt := 1; ; attempt++ {
		_, err := c.joinOnce(ctx, c.cfg.Join)
		if errors.Is(err, ErrNameConflict) {
			return err
		}
		if err == nil {
			return nil
		}
		if lastErr == nil || ctx.Err() == nil {
			lastErr = err // keep Serf's reason, not the deadline that cut the last try
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster: could not join %v within %s after %d attempts (are the peers up, and do all nodes use the same -encrypt key?): %w", c.cfg.Join, c.cfg.JoinTimeout, attempt, lastErr)
		case <-time.After(backoff):
		}
		// Logged only now that another attempt follows: the last failure
		// is returned instead.
		c.log.Warn("join failed; retrying", "join", c.cfg.Join, "attempt", attempt, "err", err)
		backoff = min(2*backoff, 2*time.Second)
	}
}

// LocalAddr returns the Serf address peers reach this node on (host:port),
// or "" before Start.
func (c *Cluster) LocalAddr() string {
	s := c.serf.Load()
	if s == nil {
		return ""
	}
	m := s.LocalMember()
	return net.JoinHostPort(m.Addr.String(), strconv.Itoa(int(m.Port)))
}

// Members lists every member Serf knows, sorted by name.
func (c *Cluster) Members() []Member {
	s := c.serf.Load()
	if s == nil {
		return nil
	}
	ms := s.Members()
	out := make([]Member, 0, len(ms))
	c.mu.Lock()
	for _, m := range ms {
		var since time.Time
		if st := c.members[m.Name]; st != nil {
			since = st.since
		}
		out = append(out, Member{
			Name:   m.Name,
			Addr:   net.JoinHostPort(m.Addr.String(), strconv.Itoa(int(m.Port))),
			Status: m.Status.String(),
			Since:  since,
			Tags:   m.Tags,
		})
	}
	c.mu.Unlock()
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Leave tells the cluster this node is leaving, so that peers remove its
// instances at once. Call Shutdown afterwards.
func (c *Cluster) Leave(ctx context.Context) error {
	s := c.serf.Load()
	if s == nil {
		return nil
	}
	done := make(chan error, 1)
	go func() { done <- s.Leave() }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("cluster: leave: %w", err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("cluster: leave: %w", ctx.Err())
	}
}

// Shutdown stops Serf without leaving (peers will see this node fail) and
// stops every replication goroutine. It is idempotent.
func (c *Cluster) Shutdown() error {
	c.mu.Lock()
	if c.stopped {
		c.mu.Unlock()
		return nil
	}
	c.stopped = true
	c.mu.Unlock()
	var err error
	if s := c.serf.Load(); s != nil {
		err = s.Shutdown()
	}
	close(c.stop)
	c.cancelBase()
	c.peers.closeAll()
	c.wg.Wait()
	if err != nil {
		return fmt.Errorf("cluster: shutdown serf: %w", err)
	}
	return nil
}
