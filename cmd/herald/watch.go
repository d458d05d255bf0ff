package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/herald-sd/herald/pushsvc/heraldpb"
)

// watchLine is the -json form of one change.
type watchLine struct {
	Time     string            `json:"time"`
	Op       string            `json:"op"` // snapshot, upsert or remove
	Revision uint64            `json:"revision"`
	Reset    bool              `json:"reset,omitempty"`
	Service  string            `json:"service"`
	ID       string            `json:"id"`
	Address  string            `json:"address"`
	Port     uint32            `json:"port"`
	Status   string            `json:"status"`
	Weight   uint32            `json:"weight"`
	Tags     []string          `json:"tags"`
	Meta     map[string]string `json:"meta,omitempty"`
	Node     string            `json:"node"`
}

func runWatch(args []string, stdout, stderr io.Writer) error {
	fs, cf := newClientFlagSet("watch", stderr)
	asJSON := fs.Bool("json", false, "print one JSON object per change")
	if err := parse(fs, args); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	c, done, err := cf.dial()
	if err != nil {
		return err
	}
	defer done()
	print := func(op string, rev uint64, reset bool, in *pb.Instance) {
		l := watchLine{
			Time: time.Now().UTC().Format(time.RFC3339Nano), Op: op, Revision: rev, Reset: reset,
			Service: in.GetService(), ID: in.GetId(), Address: in.GetAddress(), Port: in.GetPort(),
			Status: statusName(in.GetStatus()), Weight: in.GetWeight(), Tags: in.GetTags(), Meta: in.GetMeta(), Node: in.GetNode(),
		}
		if l.Tags == nil {
			l.Tags = []string{}
		}
		if *asJSON {
			b, _ := json.Marshal(l)
			fmt.Fprintf(stdout, "%s\n", b)
			return
		}
		fmt.Fprintf(stdout, "%s %-8s %s/%s %s %s weight=%d tags=%s node=%s rev=%d\n", l.Time, op, l.Service, l.ID,
			net.JoinHostPort(l.Address, strconv.Itoa(int(l.Port))), l.Status, l.Weight, strings.Join(l.Tags, ","), l.Node, rev)
	}
	// Resume from the last revision after a broken stream, with backoff.
	var rev uint64
	var origin string
	backoff := 100 * time.Millisecond
	for attempt := 0; ; attempt++ {
		err := watchOnce(ctx, c, fs.Args(), &rev, &origin, print)
		if ctx.Err() != nil {
			return nil
		}
		if code := status.Code(err); code != codes.Unavailable && code != codes.Internal && code != codes.Unknown {
			return cf.callErr(err)
		}
		if attempt == 0 && rev == 0 {
			return cf.callErr(err) // never connected: say so at once
		}
		fmt.Fprintf(stderr, "herald watch: stream to %s broke (%v); resuming from revision %d\n", cf.addr, status.Convert(err).Message(), rev)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

func watchOnce(ctx context.Context, c pb.HeraldClient, services []string, rev *uint64, origin *string, print func(string, uint64, bool, *pb.Instance)) error {
	stream, err := c.Watch(ctx, &pb.WatchRequest{Services: services, Revision: *rev, Origin: *origin})
	if err != nil {
		return err
	}
	for {
		m, err := stream.Recv()
		if err != nil {
			return err
		}
		switch m.GetKind() {
		case pb.WatchResponse_KIND_SNAPSHOT:
			for _, ev := range m.GetEvents() {
				print("snapshot", m.GetRevision(), m.GetReset_(), ev.GetInstance())
			}
		case pb.WatchResponse_KIND_DELTA:
			for _, ev := range m.GetEvents() {
				op := "upsert"
				if ev.GetOp() == pb.Event_OP_REMOVE {
					op = "remove"
				}
				r := ev.GetRevision()
				if r == 0 {
					r = m.GetRevision()
				}
				print(op, r, false, ev.GetInstance())
			}
		}
		*rev, *origin = m.GetRevision(), m.GetOrigin()
	}
}
