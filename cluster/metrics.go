package cluster

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the cluster's Prometheus collectors.
type metrics struct {
	members        *prometheus.GaugeVec
	deltasSent     prometheus.Counter
	deltasReceived prometheus.Counter
	fullSent       prometheus.Counter
	gapsRepaired   prometheus.Counter
	antiEntropy    prometheus.Counter
	ownersReaped   *prometheus.CounterVec
	lag            prometheus.Histogram

	transfersRefused prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		members: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "herald_cluster_members",
			Help: "Serf members known to this node, by status (alive, leaving, left, failed).",
		}, []string{"status"}),
		deltasSent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_cluster_deltas_sent_total",
			Help: "Local deltas sent to peers (one per delta per peer).",
		}),
		deltasReceived: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_cluster_deltas_received_total",
			Help: "Deltas received from owners.",
		}),
		fullSent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_cluster_full_states_sent_total",
			Help: "Full owner states sent to peers that were too far behind or held an older epoch.",
		}),
		gapsRepaired: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_cluster_gaps_repaired_total",
			Help: "Gaps in an owner's deltas repaired by pulling its full state.",
		}),
		antiEntropy: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_cluster_anti_entropy_runs_total",
			Help: "Digest comparisons with a peer.",
		}),
		ownersReaped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_cluster_owners_reaped_total",
			Help: "Owners whose instances were removed, by reason (left, failed).",
		}, []string{"reason"}),
		lag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "herald_replication_lag_seconds",
			Help:    "Delay from the owner's change (its timestamp in the delta) to its apply on this node.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}),
		transfersRefused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_cluster_transfers_refused_total",
			Help: "Full-state transfers refused or cut off for breaking a transfer limit (bytes, instances, time, one per owner).",
		}),
	}
	for _, c := range []prometheus.Collector{m.members, m.deltasSent, m.deltasReceived, m.fullSent, m.gapsRepaired, m.antiEntropy, m.ownersReaped, m.lag, m.transfersRefused} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("cluster: register metrics: %w", err)
		}
	}
	return m, nil
}
