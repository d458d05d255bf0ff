package main

// Traffic control (issue 14): the scenarios of testenv/traffic against
// `herald agent` processes and cmd/echo-server processes (the echo-server
// binary is taken from beside -herald, where `make build` puts it).

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/herald-sd/herald/testenv/traffic"
)

func init() {
	register("traffic/weights", benchTrafficWeights)
	register("traffic/stale-client", benchTrafficStale)
	register("traffic/rolling-restart", benchTrafficRolling)
}

// trafficEnv starts nodes agents; stop kills them.
func trafficEnv(ctx context.Context, env *benchEnv, nodes int) (traffic.Env, func(), error) {
	echo := filepath.Join(filepath.Dir(env.HeraldBin), "echo-server")
	if st, err := os.Stat(echo); err != nil || st.IsDir() {
		return traffic.Env{}, nil, fmt.Errorf("no echo-server binary at %s: run `make build`", echo)
	}
	procs, err := startClCluster(ctx, env, nodes)
	if err != nil {
		return traffic.Env{}, nil, err
	}
	dir, err := os.MkdirTemp(env.WorkDir, "traffic-")
	if err != nil {
		clKillAll(procs)
		return traffic.Env{}, nil, err
	}
	te := traffic.Env{EchoServer: echo, Dir: dir}
	for _, p := range procs {
		te.Agents = append(te.Agents, p.conn.Target())
	}
	return te, func() { clKillAll(procs) }, nil
}

func benchTrafficWeights(ctx context.Context, env *benchEnv) error {
	te, stop, err := trafficEnv(ctx, env, 1)
	if err != nil {
		return err
	}
	defer stop()
	res, err := traffic.Weights(ctx, te)
	if err != nil {
		return err
	}
	fmt.Printf("%-10s %-8s %-28s %s\n", "weights", "RPCs", "split", "max |share - weight share|")
	fmt.Printf("%-10s %-8d %-28s\n", "1:2:5", res.Before.OK, traffic.Split(res.Before))
	fmt.Printf("%-10s %-8d %-28s %.2f points (target <= 3)\n", "5:2:1", res.After.OK, traffic.Split(res.After), 100*res.MaxDeviation)
	return nil
}

func benchTrafficStale(ctx context.Context, env *benchEnv) error {
	te, stop, err := trafficEnv(ctx, env, 2)
	if err != nil {
		return err
	}
	defer stop()
	res, err := traffic.StaleClient(ctx, te)
	if err != nil {
		return err
	}
	fmt.Printf("clients  RPCs    rate     failed  stale client served by b1  b1 refused (retried)  b1 ran after its drain\n")
	fmt.Printf("%-8d %-7d %-8s %-7d %-25d %-21d %d\n", res.Clients, res.Total.Calls, fmt.Sprintf("%.0f/s", res.Rate()),
		res.Total.Failed, res.Stale.ByID["b1"], res.Drained.Refused, res.Drained.ServedWhileRefusing)
	if res.Total.Failed > 0 {
		fmt.Printf("first error: %s\n", res.Total.FirstError)
	}
	return nil
}

func benchTrafficRolling(ctx context.Context, env *benchEnv) error {
	te, stop, err := trafficEnv(ctx, env, 1)
	if err != nil {
		return err
	}
	defer stop()
	res, err := traffic.RollingRestart(ctx, te)
	if err != nil {
		return err
	}
	fmt.Printf("backends  restarted in  RPCs   failed  refused (retried)\n")
	fmt.Printf("%-9d %-13s %-6d %-7d %d\n", res.Backends, res.Duration.Round(time.Millisecond), res.Total.Calls, res.Total.Failed, res.Refused)
	if res.Total.Failed > 0 {
		fmt.Printf("first error: %s\n", res.Total.FirstError)
	}
	return nil
}
