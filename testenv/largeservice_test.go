package testenv

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	grpcresolver "google.golang.org/grpc/resolver"
	"google.golang.org/grpc/serviceconfig"

	"github.com/herald-sd/herald/pushsvc/heraldpb"
	"github.com/herald-sd/herald/resolver"
)

// TestLargeService: one service larger than grpc-go's default 4 MiB
// receive limit works end to end: DNS over TCP, `herald watch`, the
// resolver and a plain grpc-go Watch client with default options each get
// the whole service. `make abuse` runs it with 50,000 instances; `make
// test` with 5,000 of about 1 KB (5 MB).
func TestLargeService(t *testing.T) {
	if testing.Short() {
		t.Skip("large service: not in -short")
	}
	n, pad := 5000, 1000
	if os.Getenv("HERALD_ABUSE") == "full" {
		n, pad = 50000, 0
	}
	c := Start(t, Options{Nodes: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	api := c.API(0)
	start := time.Now()
	if errs := runParallel(n, 16, func(k int) error {
		in := &heraldpb.Instance{Service: "large", Id: fmt.Sprintf("i%05d", k), Address: fmt.Sprintf("10.%d.%d.%d", k>>16, (k>>8)&255, k&255), Port: 9000}
		if pad > 0 {
			in.Meta = map[string]string{"pad1": strings.Repeat("p", pad/2), "pad2": strings.Repeat("q", pad/2)}
		}
		_, err := api.Register(ctx, &heraldpb.RegisterRequest{Instance: in})
		return err
	}); len(errs) > 0 {
		t.Fatalf("%d registrations failed, first: %v", len(errs), errs[0])
	}
	Figure(t, fmt.Sprintf("large_service_%d_register_seconds", n), time.Since(start).Round(time.Millisecond))

	t.Run("plain grpc-go Watch", func(t *testing.T) {
		cc, err := grpc.NewClient(c.Node(0).GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		stream, err := heraldpb.NewHeraldClient(cc).Watch(ctx, &heraldpb.WatchRequest{Services: []string{"large"}})
		if err != nil {
			t.Fatal(err)
		}
		ids := map[string]bool{}
		parts := 0
		for {
			m, err := stream.Recv()
			if err != nil {
				t.Fatalf("after %d parts: %v", parts, err)
			}
			parts++
			for _, e := range m.GetEvents() {
				ids[e.GetInstance().GetId()] = true
			}
			if !m.GetMore() {
				break
			}
		}
		if len(ids) != n {
			t.Fatalf("the snapshot holds %d of %d instances", len(ids), n)
		}
		Figure(t, fmt.Sprintf("large_service_%d_snapshot_parts", n), parts)
	})

	t.Run("resolver", func(t *testing.T) {
		cc := &countingCC{want: n, done: make(chan struct{})}
		r, err := resolver.NewBuilder().Build(grpcresolver.Target{URL: url.URL{Scheme: "herald", Host: c.Node(0).GRPCAddr, Path: "/large"}}, cc, grpcresolver.BuildOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		select {
		case <-cc.done:
		case <-ctx.Done():
			t.Fatalf("the resolver never gave %d addresses (last: %d)", n, cc.last())
		}
		if cc.partial() {
			t.Fatalf("the resolver gave a partial list before the whole service: %v", cc.sizes)
		}
	})

	t.Run("herald watch", func(t *testing.T) {
		wctx, wcancel := context.WithTimeout(ctx, 2*time.Minute)
		defer wcancel()
		cmd := exec.CommandContext(wctx, c.bin, "watch", "-addr", c.Node(0).GRPCAddr, "-json", "large")
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { cmd.Process.Kill(); cmd.Wait() }()
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		ids := map[string]bool{}
		revs := map[uint64]bool{}
		for len(ids) < n && sc.Scan() {
			var l struct {
				Op       string `json:"op"`
				ID       string `json:"id"`
				Revision uint64 `json:"revision"`
			}
			if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
				t.Fatalf("herald watch printed %q: %v", sc.Text(), err)
			}
			if l.Op != "snapshot" {
				t.Fatalf("herald watch printed a %s before the whole snapshot (%d of %d)", l.Op, len(ids), n)
			}
			ids[l.ID], revs[l.Revision] = true, true
		}
		if len(ids) != n || len(revs) != 1 {
			t.Fatalf("herald watch printed %d of %d snapshot instances at %d revisions", len(ids), n, len(revs))
		}
	})

	t.Run("DNS over TCP", func(t *testing.T) {
		a, err := QueryDNS(ctx, c.Node(0).DNSAddr, "tcp", "large.service.herald.", dns.TypeSRV)
		if err != nil {
			t.Fatal(err)
		}
		if a.Rcode != dns.RcodeSuccess || len(a.SRV) == 0 {
			t.Fatalf("rcode %d with %d SRV records", a.Rcode, len(a.SRV))
		}
		Figure(t, fmt.Sprintf("large_service_%d_dns_tcp_srv_records", n), len(a.SRV))
	})
}

// countingCC is a grpc resolver.ClientConn that records the size of every
// address list it is given, and closes done once one holds want.
type countingCC struct {
	grpcresolver.ClientConn
	want int
	done chan struct{}

	mu    sync.Mutex
	sizes []int
	once  sync.Once
}

func (c *countingCC) UpdateState(s grpcresolver.State) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sizes = append(c.sizes, len(s.Addresses))
	if len(s.Addresses) == c.want {
		c.once.Do(func() { close(c.done) })
	}
	return nil
}

func (c *countingCC) ReportError(error) {}

func (c *countingCC) ParseServiceConfig(string) *serviceconfig.ParseResult {
	return &serviceconfig.ParseResult{}
}

func (c *countingCC) last() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.sizes) == 0 {
		return 0
	}
	return c.sizes[len(c.sizes)-1]
}

// partial reports whether a non-empty list smaller than the service came
// before the whole one.
func (c *countingCC) partial() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range c.sizes {
		if s == c.want {
			return false
		}
		if s > 0 {
			return true
		}
	}
	return false
}
