package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"google.golang.org/grpc/credentials"

	"github.com/herald-sd/herald/pushsvc/heraldtls"
)

func init() {
	register("cluster/propagation-mtls", benchClusterPropagationMTLS)
}

// clTLS is a benchmark's CA, node certificates and client credentials.
type clTLS struct {
	dir    string
	client credentials.TransportCredentials
}

func newClTLS(dir string) (*clTLS, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if _, _, err := heraldtls.CreateCA(dir); err != nil {
		return nil, err
	}
	cert, key, err := heraldtls.CreateCert(heraldtls.CertRequest{CADir: dir, Client: "bench", Dir: dir})
	if err != nil {
		return nil, err
	}
	cfg, err := heraldtls.Files{CA: filepath.Join(dir, heraldtls.CAFile), Cert: cert, Key: key}.ClientConfig()
	if err != nil {
		return nil, err
	}
	return &clTLS{dir: dir, client: credentials.NewTLS(cfg)}, nil
}

// nodeArgs creates node name's certificate and returns its -tls-* flags.
func (t *clTLS) nodeArgs(name string) ([]string, error) {
	cert, key, err := heraldtls.CreateCert(heraldtls.CertRequest{CADir: t.dir, Node: name, Dir: t.dir})
	if err != nil {
		return nil, err
	}
	return []string{"-tls-ca", filepath.Join(t.dir, heraldtls.CAFile), "-tls-cert", cert, "-tls-key", key}, nil
}

// benchClusterPropagationMTLS runs two 5-node clusters side by side, one
// plaintext and one with mutual TLS, and registers on them in turn (one
// instance on A of one, then of the other), so that both see the same
// machine load; it prints the arrival on E of each, and the difference.
func benchClusterPropagationMTLS(ctx context.Context, env *benchEnv) error {
	const count = 1000
	tlsFiles, err := newClTLS(filepath.Join(env.WorkDir, "tls"))
	if err != nil {
		return err
	}
	plainNodes, err := startClClusterWith(ctx, env, 5, clOptions{})
	if err != nil {
		return err
	}
	defer clKillAll(plainNodes)
	tlsNodes, err := startClClusterWith(ctx, env, 5, clOptions{tls: tlsFiles})
	if err != nil {
		return err
	}
	defer clKillAll(tlsNodes)
	plain, err := newPropProbe(ctx, plainNodes)
	if err != nil {
		return err
	}
	defer plain.close()
	mtls, err := newPropProbe(ctx, tlsNodes)
	if err != nil {
		return err
	}
	defer mtls.close()
	for i := range count {
		svc := fmt.Sprintf("p%04d", i)
		if err := plain.measure(ctx, svc); err != nil {
			return fmt.Errorf("plaintext: %w", err)
		}
		if err := mtls.measure(ctx, svc); err != nil {
			return fmt.Errorf("mTLS: %w", err)
		}
	}
	fmt.Printf("two clusters of 5 herald agents on loopback, plaintext and mutual TLS, side by side; %d registrations via gRPC on A of each, alternating; %s\n", count, clLoad())
	fmt.Printf("%-24s %10s %10s %10s %10s %12s\n", "arrival on E", "plain p50", "plain p99", "mTLS p50", "mTLS p99", "p99 added")
	for _, row := range []struct {
		name   string
		p, m   []time.Duration
		target string
	}{
		{"(register call on A)", plain.callLat, mtls.callLat, ""},
		{"gRPC Watch stream", plain.watchLat, mtls.watchLat, " (target <= 0.5ms)"},
		{"DNS answer (UDP A)", plain.dnsLat, mtls.dnsLat, ""},
	} {
		p50, p99, _ := clQuantiles(row.p)
		m50, m99, _ := clQuantiles(row.m)
		fmt.Printf("%-24s %10s %10s %10s %10s %12s%s\n", row.name, clFmtDur(p50), clFmtDur(p99), clFmtDur(m50), clFmtDur(m99), clFmtDiff(m99-p99), row.target)
	}
	return nil
}

func clFmtDiff(d time.Duration) string {
	if d < 0 {
		return "-" + clFmtDur(-d)
	}
	return "+" + clFmtDur(d)
}
