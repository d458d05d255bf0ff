package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"testing"

	"github.com/herald-sd/herald/cluster/registry"
	"github.com/herald-sd/herald/pushsvc"
)

// TestServicesReadsEveryPage: `herald services` against a real gRPC server
// with more services than one page holds lists every one of them.
func TestServicesReadsEveryPage(t *testing.T) {
	reg, err := registry.New(registry.Config{Node: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	const n = 12000 // more than two pages of 5,000
	for i := range n {
		in := &registry.Instance{Service: fmt.Sprintf("svc-%05d", i), ID: "a", Address: netip.MustParseAddr("10.0.0.1"), Port: 80}
		if _, err := reg.Register(context.Background(), in); err != nil {
			t.Fatal(err)
		}
	}
	cfg := pushsvc.DefaultConfig()
	cfg.Registry = reg
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	srv, err := pushsvc.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	gs := srv.NewGRPCServer()
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	go gs.Serve(lis)
	defer gs.Stop()

	var out, errOut bytes.Buffer
	if err := runServices([]string{"-addr", addr, "-json"}, &out, &errOut); err != nil {
		t.Fatalf("herald services: %v: %s", err, errOut.String())
	}
	var got []serviceJSON
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if len(got) != n || got[0].Name != "svc-00000" || got[n-1].Name != fmt.Sprintf("svc-%05d", n-1) {
		t.Fatalf("listed %d services, want %d", len(got), n)
	}
}
