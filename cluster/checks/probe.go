package checks

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"unicode"
	"unicode/utf8"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/herald-sd/herald/cluster/registry"
)

// Result is what one probe found.
type Result struct {
	Status registry.Status // passing, warning or critical
	Output string          // a line for people: "HTTP 200 OK", "dial tcp ...: connection refused"
}

// Prober runs one probe of a check, within ctx (which carries the check's
// timeout).
type Prober interface {
	Probe(ctx context.Context, c registry.Check) Result
}

// NetProber probes over the network: a TCP connect, an HTTP GET, a gRPC
// health Check. The zero value is ready to use.
type NetProber struct {
	// HTTP is the client of http checks. Default: one without keep-alives
	// (each probe opens its own connection, as a new client would), that
	// follows no redirect.
	HTTP *http.Client
}

var defaultHTTP = &http.Client{
	Transport:     &http.Transport{DisableKeepAlives: true, Proxy: nil, MaxResponseHeaderBytes: 16 << 10},
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// Probe runs the check c once.
func (p NetProber) Probe(ctx context.Context, c registry.Check) Result {
	switch c.Kind {
	case registry.CheckTCP:
		return probeTCP(ctx, c.Target)
	case registry.CheckHTTP:
		hc := p.HTTP
		if hc == nil {
			hc = defaultHTTP
		}
		return probeHTTP(ctx, hc, c.Target)
	case registry.CheckGRPC:
		return probeGRPC(ctx, c.Target)
	}
	return Result{registry.StatusCritical, fmt.Sprintf("unknown check kind %s", c.Kind)}
}

func probeTCP(ctx context.Context, target string) Result {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", target)
	if err != nil {
		return Result{registry.StatusCritical, err.Error()}
	}
	conn.Close()
	return Result{registry.StatusPassing, "TCP connect " + target + ": ok"}
}

// maxDrain is how much of a response body a probe reads (and discards) so
// that the connection can be reused.
const maxDrain = 4096

// probeHTTP GETs target. The output is the status line only, never the
// body: whoever may register a check could otherwise read any URL the
// node reaches (a cloud metadata endpoint, an internal admin page) back
// through the output, which every reader of the service sees.
func probeHTTP(ctx context.Context, hc *http.Client, target string) Result {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return Result{registry.StatusCritical, err.Error()}
	}
	req.Header.Set("User-Agent", "herald-check")
	resp, err := hc.Do(req)
	if err != nil {
		return Result{registry.StatusCritical, err.Error()}
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxDrain))
	out := "HTTP " + printable(resp.Status)
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return Result{registry.StatusPassing, out}
	case resp.StatusCode == http.StatusTooManyRequests:
		return Result{registry.StatusWarning, out}
	}
	return Result{registry.StatusCritical, out}
}

func probeGRPC(ctx context.Context, target string) Result {
	addr, service, _ := strings.Cut(target, "/")
	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return Result{registry.StatusCritical, err.Error()}
	}
	defer conn.Close()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: service})
	if err != nil {
		return Result{registry.StatusCritical, "grpc health: " + err.Error()}
	}
	out := "grpc health: " + resp.GetStatus().String()
	if resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
		return Result{registry.StatusPassing, out}
	}
	return Result{registry.StatusCritical, out}
}

// printable keeps the output one line of printable text.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if r == utf8.RuneError || !unicode.IsPrint(r) {
			return ' '
		}
		return r
	}, s)
}

// clip bounds the output at registry.MaxCheckOutput bytes, on a rune
// boundary.
func clip(s string) string {
	s = printable(s)
	if len(s) <= registry.MaxCheckOutput {
		return s
	}
	s = s[:registry.MaxCheckOutput]
	for !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}
