package dnsserver

import (
	"fmt"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
)

// The qtypes and rcodes that get their own label value; the rest are
// counted as "other". Their counters are resolved once, so the hot path
// does no label lookup.
var (
	metricQtypes = []uint16{dns.TypeA, dns.TypeAAAA, dns.TypeSRV, dns.TypeANY, dns.TypeSOA, dns.TypeNS}
	metricRcodes = []int{dns.RcodeSuccess, dns.RcodeFormatError, dns.RcodeServerFailure,
		dns.RcodeNameError, dns.RcodeNotImplemented, dns.RcodeRefused, dns.RcodeBadVers}
)

type metrics struct {
	requests [][]prometheus.Counter // [qtype index][rcode index]; last index is "other"
	duration [2]prometheus.Observer // udp, tcp
	rrlDrop  prometheus.Counter
	rrlSlip  prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	if reg == nil {
		return nil, nil
	}
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "herald_dns_requests_total",
		Help: "DNS requests answered, by query type and response code.",
	}, []string{"qtype", "rcode"})
	duration := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "herald_dns_request_duration_seconds",
		Help:    "Time to answer a DNS request in the handler, by transport.",
		Buckets: prometheus.ExponentialBuckets(10e-6, 4, 9), // 10us to 655ms
	}, []string{"proto"})
	rrl := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "herald_dns_rrl_responses_total",
		Help: "UDP responses held back by response-rate limiting (-dns-rrl-rate): dropped, or sent truncated so the client retries over TCP.",
	}, []string{"action"})
	for _, c := range []prometheus.Collector{requests, duration, rrl} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("dnsserver: register metrics: %w", err)
		}
	}
	m := &metrics{requests: make([][]prometheus.Counter, len(metricQtypes)+1)}
	for i := range m.requests {
		qt := "other"
		if i < len(metricQtypes) {
			qt = dns.TypeToString[metricQtypes[i]]
		}
		m.requests[i] = make([]prometheus.Counter, len(metricRcodes)+1)
		for j := range m.requests[i] {
			rc := "other"
			if j < len(metricRcodes) {
				rc = dns.RcodeToString[metricRcodes[j]]
			}
			m.requests[i][j] = requests.WithLabelValues(qt, rc)
		}
	}
	m.duration[0] = duration.WithLabelValues("udp")
	m.duration[1] = duration.WithLabelValues("tcp")
	m.rrlDrop = rrl.WithLabelValues("dropped")
	m.rrlSlip = rrl.WithLabelValues("truncated")
	return m, nil
}

func (m *metrics) observe(qtype uint16, rcode int, tcp bool, d time.Duration) {
	qi := len(metricQtypes)
	for i, t := range metricQtypes {
		if t == qtype {
			qi = i
			break
		}
	}
	ri := len(metricRcodes)
	for i, c := range metricRcodes {
		if c == rcode {
			ri = i
			break
		}
	}
	m.requests[qi][ri].Inc()
	p := 0
	if tcp {
		p = 1
	}
	m.duration[p].Observe(d.Seconds())
}

// rrl counts one response held back by the rate limiter. m may be nil.
func (m *metrics) rrl(slip bool) {
	switch {
	case m == nil:
	case slip:
		m.rrlSlip.Inc()
	default:
		m.rrlDrop.Inc()
	}
}
