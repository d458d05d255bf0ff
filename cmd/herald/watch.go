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

	"github.com/herald-sd/herald/pushsvc/client"
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
	// CheckOutput is the active check's output at its last status change.
	CheckOutput string `json:"check_output,omitempty"`
}

// watchBackoff is the wait between a broken stream and the next: 100ms,
// doubling up to 5s.
var watchBackoff = client.Backoff{Base: 100 * time.Millisecond, Max: 5 * time.Second}

// runWatch prints every change of the watched services until it is
// interrupted. The client resumes a broken stream from the last revision;
// this says so on stderr, and gives up at once when the first stream fails
// or the agent refuses the watch.
func runWatch(args []string, stdout, stderr io.Writer) error {
	fs, cf := newClientFlagSet("watch", stderr)
	asJSON := fs.Bool("json", false, "print one JSON object per change")
	if err := parse(fs, args); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	c, err := cf.client(client.WithBackoff(watchBackoff))
	if err != nil {
		return err
	}
	defer c.Close()

	print := func(e client.Event) {
		in := &e.Instance
		l := watchLine{
			Time: time.Now().UTC().Format(time.RFC3339Nano), Op: e.Op.String(), Revision: e.Revision, Reset: e.Reset,
			Service: in.Service, ID: in.ID, Address: in.Address.String(), Port: uint32(in.Port),
			Status: statusName(in.Status), Weight: in.Weight, Tags: in.Tags, Meta: in.Meta, Node: in.Node,
			CheckOutput: in.CheckOutput,
		}
		if l.Tags == nil {
			l.Tags = []string{}
		}
		if *asJSON {
			b, _ := json.Marshal(l)
			fmt.Fprintf(stdout, "%s\n", b)
			return
		}
		check := ""
		if l.CheckOutput != "" {
			check = fmt.Sprintf(" check=%q", l.CheckOutput)
		}
		fmt.Fprintf(stdout, "%s %-8s %s/%s %s %s weight=%d tags=%s node=%s rev=%d%s\n", l.Time, l.Op, cell(l.Service), cell(l.ID),
			net.JoinHostPort(l.Address, strconv.Itoa(int(l.Port))), l.Status, l.Weight, cell(strings.Join(l.Tags, ",")), cell(l.Node), l.Revision, check)
	}
	// Both callbacks run on the watcher's goroutine; failed is read after
	// the watcher is done.
	wctx, giveUp := context.WithCancel(ctx)
	defer giveUp()
	var failed error
	first := true
	ended := func(e client.StreamEnd) {
		never := first && e.Revision == 0 // never connected: say so at once
		first = false
		if code := grpcStatus(e.Err).Code(); never || code != codes.Unavailable && code != codes.Internal && code != codes.Unknown {
			failed = e.Err
			giveUp()
			return
		}
		fmt.Fprintf(stderr, "herald watch: stream to %s broke (%v); resuming from revision %d\n", e.Agent, grpcStatus(e.Err).Message(), e.Revision)
	}
	w, err := c.Watch(wctx, fs.Args(), client.WithEvents(print), client.WithStreamEnds(ended))
	if err != nil {
		return err
	}
	<-w.Done()
	if ctx.Err() != nil {
		return nil // interrupted
	}
	return cf.callErr(failed)
}
