package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/herald-sd/herald/pushsvc/client"
	pb "github.com/herald-sd/herald/pushsvc/heraldpb"
	"github.com/herald-sd/herald/testenv/wait"
)

// TestAgentMemoryFigures measures a real agent's memory for the README's
// sizing: its heap in use (go_memstats_heap_inuse_bytes) and resident set
// (VmRSS) before and after 20,000 instances (200 services of 100, one tag
// and one meta key each), then after 1,000 Watch streams of one service
// each over 10 connections. It runs only when asked:
//
//	HERALD_MEASURE=1 go test -count=1 -run TestAgentMemoryFigures -v ./cmd/herald/
func TestAgentMemoryFigures(t *testing.T) {
	if os.Getenv("HERALD_MEASURE") == "" {
		t.Skip("a measurement: HERALD_MEASURE=1 runs it")
	}
	const instances, watchers, conns = 20000, 1000, 10
	a := startAgent(t, "-dev")
	heap0, rss0 := a.memory()
	conn, err := grpc.NewClient("passthrough:///"+a.grpc, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	api := pb.NewHeraldClient(conn)
	ctx := context.Background()
	for j := range instances {
		in := &pb.Instance{Service: fmt.Sprintf("svc%03d", j%200), Id: fmt.Sprintf("i%05d", j), Address: fmt.Sprintf("10.%d.%d.%d", j>>16&255, j>>8&255, j&255),
			Port: 8080, Tags: []string{"v1"}, Meta: map[string]string{"zone": "a"}}
		if _, err := api.Register(ctx, &pb.RegisterRequest{Instance: in}); err != nil {
			t.Fatal(err)
		}
	}
	conn.Close()
	heap1, rss1 := a.memory()
	started := 0
	for c := range conns {
		cl, err := client.New([]string{a.grpc}, client.WithLogger(nil))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		for w := range watchers / conns {
			svc := fmt.Sprintf("svc%03d", (c*watchers/conns+w)%200)
			if _, err := cl.Watch(ctx, []string{svc}, client.WithEvents(func(client.Event) {})); err != nil {
				t.Fatal(err)
			}
			started++
		}
	}
	wait.Eventually(t, 60*time.Second, "every watch stream open", func() bool { return metricValue(a.metrics(), "herald_watches") >= float64(started) })
	heap2, rss2 := a.memory()
	t.Logf("%d instances: heap %+.0f B/instance, RSS %+.0f B/instance (heap %.1f -> %.1f MiB, RSS %.1f -> %.1f MiB)",
		instances, (heap1-heap0)/instances, (rss1-rss0)/instances, heap0/(1<<20), heap1/(1<<20), rss0/(1<<20), rss1/(1<<20))
	t.Logf("%d watchers: heap %+.0f B/watcher, RSS %+.0f B/watcher (RSS %.1f MiB with them)",
		watchers, (heap2-heap1)/watchers, (rss2-rss1)/watchers, rss2/(1<<20))
}

// memory returns the agent's heap in use and its resident set, in bytes.
func (a *agentProc) memory() (heap, rss float64) {
	a.t.Helper()
	heap = metricValue(a.metrics(), "go_memstats_heap_inuse_bytes")
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", a.cmd.Process.Pid))
	if err != nil {
		a.t.Fatal(err)
	}
	for _, l := range strings.Split(string(status), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			rss = kb * 1024
		}
	}
	return heap, rss
}

// metricValue returns the value of an unlabelled metric in a /metrics page.
func metricValue(page, name string) float64 {
	for _, l := range strings.Split(page, "\n") {
		if strings.HasPrefix(l, name+" ") {
			v, _ := strconv.ParseFloat(strings.TrimPrefix(l, name+" "), 64)
			return v
		}
	}
	return -1
}
