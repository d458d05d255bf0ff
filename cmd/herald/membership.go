package main

import (
	"context"
	"fmt"
	"io"
	"time"

	pb "github.com/herald-sd/herald/pushsvc/heraldpb"
)

// runJoin: herald join ADDR...
func runJoin(args []string, stdout, stderr io.Writer) error {
	fs, cf := newClientFlagSet("join", stderr)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: herald join [flags] SERF-ADDR...\n\nThe agent at -addr joins the cluster of the members at these Serf addresses (host:port).")
		fs.PrintDefaults()
	}
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return usagef("want at least one Serf address (host:port), after the flags: herald join [-addr A] 10.0.0.1:7946")
	}
	return cf.do(func(ctx context.Context, c pb.HeraldClient) error {
		resp, err := c.Join(ctx, &pb.JoinRequest{Addresses: fs.Args()})
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "joined: reached %d of %d address(es)\n", resp.GetJoined(), fs.NArg())
		return nil
	})
}

// runForceLeave: herald force-leave [-prune] NODE
func runForceLeave(args []string, stdout, stderr io.Writer) error {
	fs, cf := newClientFlagSet("force-leave", stderr)
	prune := fs.Bool("prune", false, "also forget the member, so that it no longer shows as left")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: herald force-leave [flags] NODE\n\nMoves a failed member to left at once: its instances are removed now, not after -reap-failed.")
		fs.PrintDefaults()
	}
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("want exactly one node name, after the flags: herald force-leave [-prune] NODE")
	}
	node := fs.Arg(0)
	return cf.do(func(ctx context.Context, c pb.HeraldClient) error {
		if _, err := c.ForceLeave(ctx, &pb.ForceLeaveRequest{Node: node, Prune: *prune}); err != nil {
			return err
		}
		if *prune {
			fmt.Fprintf(stdout, "force-left and pruned %s\n", node)
		} else {
			fmt.Fprintf(stdout, "force-left %s: it is now left and its instances are removed\n", node)
		}
		return nil
	})
}

// memberStatus is the member's status, with how long it has been so for a
// failed or left member: "failed (12s)".
func memberStatus(m *pb.Member, now time.Time) string {
	st := m.GetStatus()
	if (st != "failed" && st != "left") || m.GetStatusSince() == nil {
		return st
	}
	return fmt.Sprintf("%s (%s)", st, age(now.Sub(m.GetStatusSince().AsTime())))
}

// age prints a duration in whole seconds, minutes or hours: 12s, 3m12s, 2h5m.
func age(d time.Duration) string {
	d = max(d, 0).Round(time.Second)
	if d < time.Hour {
		return d.String()
	}
	h := d / time.Hour
	return fmt.Sprintf("%dh%dm", h, (d-h*time.Hour)/time.Minute)
}
