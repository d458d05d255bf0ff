package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/herald-sd/herald/cluster/registry"
	"github.com/herald-sd/herald/pushsvc/client"
	pb "github.com/herald-sd/herald/pushsvc/heraldpb"
)

const defaultAgentAddr = "127.0.0.1:8700"

// clientFlags are the flags every client command shares.
type clientFlags struct {
	addr    string
	timeout time.Duration
	tok     tokenFlags // token.go
	tls     tlsFlags
}

func newClientFlagSet(name string, stderr io.Writer) (*flag.FlagSet, *clientFlags) {
	fs := flag.NewFlagSet("herald "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cf := &clientFlags{}
	def := os.Getenv("HERALD_ADDR")
	if def == "" {
		def = defaultAgentAddr
	}
	fs.StringVar(&cf.addr, "addr", def, "agent gRPC `address`, or a comma-separated list tried in order (env HERALD_ADDR)")
	fs.DurationVar(&cf.timeout, "timeout", 5*time.Second, "time limit for the request to each agent")
	cf.tok.register(fs)
	cf.tls.register(fs)
	return fs, cf
}

// parse parses args and maps flag errors to usage errors.
// A mistake prints one line that names the mistake and how to see the
// flags, not the flag package's error followed by every flag's help; -h
// prints the help.
func parse(fs *flag.FlagSet, args []string) error {
	out := fs.Output()
	var help bytes.Buffer
	fs.SetOutput(&help)
	err := fs.Parse(args)
	fs.SetOutput(out)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			out.Write(help.Bytes())
			return err
		}
		return usagef("%v (run '%s -h' for its flags)", err, fs.Name())
	}
	return flagsBeforeArgs(fs)
}

// dial connects to the agent at addr. The connection is lazy; errors
// surface on the first call and are explained by callErr.
func (cf *clientFlags) dial(addr string) (pb.HeraldClient, func(), error) {
	tokOpts, err := cf.tok.dialOptions()
	if err != nil {
		return nil, nil, err
	}
	creds, err := cf.tls.dialOption()
	if err != nil {
		return nil, nil, err
	}
	conn, err := grpc.NewClient("passthrough:///"+addr, append(tokOpts, creds,
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))...) // a watch snapshot is one message
	if err != nil {
		return nil, nil, usagef("bad -addr %q: %v", addr, err)
	}
	return pb.NewHeraldClient(conn), func() { conn.Close() }, nil
}

// client returns a pushsvc/client for the agent, for the commands that hold
// a stream. It logs nothing: the commands report what happens themselves.
func (cf *clientFlags) client(opts ...client.Option) (*client.Client, error) {
	tokOpt, err := cf.tok.clientOption()
	if err != nil {
		return nil, err
	}
	creds, err := cf.tls.creds()
	if err != nil {
		return nil, err
	}
	base := []client.Option{client.WithLogger(nil), tokOpt, client.WithTransportCredentials(creds)}
	if cf.timeout > 0 {
		base = append(base, client.WithCallTimeout(cf.timeout))
	}
	if err := cf.validate(); err != nil {
		return nil, err
	}
	c, err := client.New(cf.addrs(), append(base, opts...)...)
	if err != nil {
		return nil, usagef("bad -addr %q: %v", cf.addr, err)
	}
	return c, nil
}

// grpcStatus returns the gRPC status that err carries, under any wrapping
// (pushsvc/client wraps); status.FromError would put the wrapping's text in
// the message. A context error maps to its code.
func grpcStatus(err error) *status.Status {
	var se interface{ GRPCStatus() *status.Status }
	if errors.As(err, &se) {
		return se.GRPCStatus()
	}
	return status.FromContextError(err)
}

// callErr turns a gRPC error into a message a person can act on.
func (cf *clientFlags) callErr(err error) error {
	var ue usageError
	if err == nil || errors.As(err, &ue) {
		return err
	}
	st := grpcStatus(err)
	switch st.Code() {
	case codes.Unavailable:
		if strings.Contains(st.Message(), registry.ErrNotDurable.Error()) {
			// The agent answered: it applied the write but its disk failed.
			return fmt.Errorf("the agent at %s could not store the write on its disk; the same command, retried, succeeds once it is stored: %s", cf.addr, st.Message())
		}
		return fmt.Errorf("cannot reach %s: %s (is `herald agent` running? set -addr or HERALD_ADDR; an agent with TLS needs -tls-ca, -tls-cert and -tls-key or HERALD_TLS_*)", cf.agents(), st.Message())
	case codes.Unauthenticated, codes.PermissionDenied:
		return aclErr(cf.addr, st)
	case codes.DeadlineExceeded:
		return fmt.Errorf("%s did not answer within -timeout %s", cf.agents(), cf.timeout)
	default:
		return errors.New(statusMessage(st))
	}
}

// do runs one unary call against the first agent of -addr that can be
// reached, each within -timeout (addrs.go).
func (cf *clientFlags) do(call func(ctx context.Context, c pb.HeraldClient) error) error {
	if err := cf.validate(); err != nil {
		return err
	}
	return cf.callErr(cf.failover(call))
}

func codeName(c codes.Code) string {
	s := c.String()
	var b strings.Builder
	for i, r := range s {
		if i > 0 && r >= 'A' && r <= 'Z' {
			b.WriteByte(' ')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// multiFlag collects a repeatable string flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func runRegister(args []string, stdout, stderr io.Writer) error {
	fs, cf := newClientFlagSet("register", stderr)
	service := fs.String("service", "", "service name (a DNS label)")
	id := fs.String("id", "", "instance id, unique within the service")
	address := fs.String("address", "", "IPv4 or IPv6 address")
	port := fs.Uint("port", 0, "port, 1 to 65535")
	var weight weightFlag // output.go
	fs.Var(&weight, "weight", "weight `N` from 0 to 65535, the instance's share of new traffic; 0 means none (default 1)")
	st := fs.String("status", "passing", "initial `status`: passing, warning, critical or draining (draining: registered but sent no new traffic)")
	check := fs.String("check", "", "what keeps the instance (`CHECK`): none (until deregistered), ttl=DURATION (renewed with 'herald heartbeat' within DURATION, else critical, then removed), session (lives while this command runs), "+
		"or an active check the agent probes: tcp=HOST:PORT, http=URL (2xx passing, 429 warning, else critical) or grpc=HOST:PORT[/SERVICE] (grpc.health.v1), each with options ,interval=10s,timeout=5s,deregister-after=0,success-before-passing=1,failures-before-critical=1")
	var tags, meta multiFlag
	fs.Var(&tags, "tag", "a `tag` (repeatable)")
	fs.Var(&meta, "meta", "metadata `key=value` (repeatable)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	if *port > 65535 {
		return usagef("-port %d is out of range 1 to 65535", *port)
	}
	in := &pb.Instance{Service: *service, Id: *id, Address: *address, Port: uint32(*port), Tags: tags, Meta: map[string]string{}}
	if weight.set {
		w := weight.n
		in.Weight = &w
	}
	s, ok := statusByName[strings.ToLower(*st)]
	if !ok {
		return usagef("-status %q: must be passing, warning, critical or draining", *st)
	}
	in.Status = s
	for _, kv := range meta {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return usagef("-meta %q: want key=value", kv)
		}
		in.Meta[k] = v
	}
	session := false
	switch {
	case *check == "":
	case *check == "session":
		session = true
		in.Check = &pb.Check{Kind: pb.Check_KIND_SESSION}
	case strings.HasPrefix(*check, "ttl="):
		d, err := time.ParseDuration(strings.TrimPrefix(*check, "ttl="))
		if err != nil {
			return usagef("-check %q: %v", *check, err)
		}
		if d <= 0 {
			return usagef("-check %q: the ttl must be more than 0", *check)
		}
		in.Check = &pb.Check{Kind: pb.Check_KIND_TTL, Ttl: durationpb.New(d)}
	default:
		c, ok, err := activeCheck(*check) // checkflag.go
		if !ok {
			return usagef("-check %q: want ttl=DURATION, session, tcp=HOST:PORT, http=URL or grpc=HOST:PORT[/SERVICE]", *check)
		}
		if err != nil {
			return usagef("-check: %v", err)
		}
		in.Check = c
	}
	if session {
		return registerSession(cf, in, stdout)
	}
	return cf.do(func(ctx context.Context, c pb.HeraldClient) error {
		resp, err := c.Register(ctx, &pb.RegisterRequest{Instance: in})
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "registered %s/%s on node %s stamp=%d\n", resp.GetInstance().GetService(), resp.GetInstance().GetId(), resp.GetInstance().GetNode(), resp.GetInstance().GetStamp())
		return nil
	})
}

// registerSession registers on one session (pushsvc/client's single-session
// registration) and holds it until the process is interrupted, the session
// ends, or a newer write of the key through another node takes it; the
// agent then removes the instance.
func registerSession(cf *clientFlags, p *pb.Instance, stdout io.Writer) error {
	in := client.Instance{Service: p.GetService(), ID: p.GetId(), Port: uint16(p.GetPort()), Tags: p.GetTags(), Meta: p.GetMeta(), Status: p.GetStatus()}
	if a := p.GetAddress(); a != "" { // an empty one is the agent's to refuse
		addr, err := netip.ParseAddr(a)
		if err != nil {
			// The agent's words for the same mistake (pushsvc's instanceFromProto).
			return cf.callErr(status.Error(codes.InvalidArgument,
				(&registry.FieldError{Field: "address", Msg: fmt.Sprintf("%q is not an IPv4 or IPv6 address", a)}).Error()))
		}
		in.Address = addr
	}
	opts := []client.RegisterOption{client.WithSingleSession()}
	if p.Weight != nil {
		opts = append(opts, client.WithWeight(p.GetWeight()))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	c, err := cf.client()
	if err != nil {
		return err
	}
	defer c.Close() // without draining: ending the session removes the instance
	reg, err := c.Register(ctx, in, opts...)
	if err != nil {
		return cf.callErr(err)
	}
	fmt.Fprintf(stdout, "registered %s/%s on node %s for this session; interrupt to deregister\n", in.Service, in.ID, reg.Instance().Node)
	select {
	case <-ctx.Done():
		return nil // interrupted: closing the session deregisters
	case <-reg.Done():
	}
	select {
	case <-reg.Lost(): // closed before Done
		return fmt.Errorf("%s; exiting", strings.TrimPrefix(grpcStatus(reg.Err()).Message(), "registry: "))
	default:
	}
	if ctx.Err() != nil {
		return nil
	}
	return fmt.Errorf("session to %s ended, so the agent removed the instance: %w", cf.addr, cf.callErr(reg.Err()))
}

var statusByName = map[string]pb.Status{
	"passing":  pb.Status_STATUS_PASSING,
	"warning":  pb.Status_STATUS_WARNING,
	"critical": pb.Status_STATUS_CRITICAL,
	"draining": pb.Status_STATUS_DRAINING,
}

func statusName(s pb.Status) string {
	for n, v := range statusByName {
		if v == s {
			return n
		}
	}
	return "unknown"
}

// keyFlags parses -service and -id, both required.
func keyFlags(name string, args []string, stderr io.Writer) (*pb.InstanceKey, *clientFlags, error) {
	fs, cf := newClientFlagSet(name, stderr)
	service := fs.String("service", "", "service name")
	id := fs.String("id", "", "instance id")
	if err := parse(fs, args); err != nil {
		return nil, nil, err
	}
	if err := noArgs(fs); err != nil {
		return nil, nil, err
	}
	if *service == "" || *id == "" {
		return nil, nil, usagef("want -service NAME -id ID")
	}
	return &pb.InstanceKey{Service: *service, Id: *id}, cf, nil
}

func runDeregister(args []string, stdout, stderr io.Writer) error {
	key, cf, err := keyFlags("deregister", args, stderr)
	if err != nil {
		return err
	}
	return cf.do(func(ctx context.Context, c pb.HeraldClient) error {
		resp, err := c.Deregister(ctx, &pb.DeregisterRequest{Key: key})
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "deregistered %s/%s stamp=%d\n", key.Service, key.Id, resp.GetStamp())
		return nil
	})
}

func runHeartbeat(args []string, stdout, stderr io.Writer) error {
	key, cf, err := keyFlags("heartbeat", args, stderr)
	if err != nil {
		return err
	}
	return cf.do(func(ctx context.Context, c pb.HeraldClient) error {
		if _, err := c.Heartbeat(ctx, &pb.HeartbeatRequest{Key: key}); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "renewed %s/%s\n", key.Service, key.Id)
		return nil
	})
}

func runDrain(args []string, stdout, stderr io.Writer) error {
	return setStatus("drain", pb.Status_STATUS_DRAINING, args, stdout, stderr)
}

func runUndrain(args []string, stdout, stderr io.Writer) error {
	return setStatus("undrain", pb.Status_STATUS_PASSING, args, stdout, stderr)
}

func setStatus(name string, st pb.Status, args []string, stdout, stderr io.Writer) error {
	fs, cf := newClientFlagSet(name, stderr)
	service := fs.String("service", "", "only this service (default: every instance the agent owns)")
	id := fs.String("id", "", "only this instance (needs -service)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	if *id != "" && *service == "" {
		return usagef("-id needs -service")
	}
	return cf.do(func(ctx context.Context, c pb.HeraldClient) error {
		resp, err := c.SetStatus(ctx, &pb.SetStatusRequest{Service: *service, Id: *id, Status: st})
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s: %d instance(s) now %s\n", name, resp.GetMatched(), statusName(st))
		return nil
	})
}

func runServices(args []string, stdout, stderr io.Writer) error {
	fs, cf := newClientFlagSet("services", stderr)
	asJSON := fs.Bool("json", false, "print a JSON array")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	return cf.do(func(ctx context.Context, c pb.HeraldClient) error {
		resp, err := listAllServices(ctx, c)
		if err != nil {
			return err
		}
		if *asJSON {
			return printServicesJSON(stdout, resp)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SERVICE\tINSTANCES\tSERVING\tTAGS")
		for _, s := range resp.GetServices() {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%s\n", cell(s.GetName()), s.GetInstances(), s.GetServing(), cell(strings.Join(s.GetTags(), ",")))
		}
		return tw.Flush()
	})
}

func runInstances(args []string, stdout, stderr io.Writer) error {
	fs, cf := newClientFlagSet("instances", stderr)
	tag := fs.String("tag", "", "only instances with this tag")
	asJSON := fs.Bool("json", false, "print a JSON array")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("want exactly one service name, after the flags: herald instances [-tag T] [-json] SERVICE")
	}
	service := fs.Arg(0)
	return cf.do(func(ctx context.Context, c pb.HeraldClient) error {
		instances, err := listAllInstances(ctx, c, service, *tag)
		if err != nil {
			return err
		}
		if len(instances) == 0 {
			if err := serviceExists(ctx, c, service, *tag); err != nil {
				return err
			}
		}
		if *asJSON {
			return printInstancesJSON(stdout, instances)
		}
		return printInstances(stdout, instances)
	})
}

func runMembers(args []string, stdout, stderr io.Writer) error {
	fs, cf := newClientFlagSet("members", stderr)
	asJSON := fs.Bool("json", false, "print a JSON array")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	return cf.do(func(ctx context.Context, c pb.HeraldClient) error {
		resp, err := c.Members(ctx, &pb.MembersRequest{})
		if err != nil {
			return err
		}
		if *asJSON {
			return printMembersJSON(stdout, resp)
		}
		return printMembers(stdout, resp)
	})
}

func printMembers(stdout io.Writer, resp *pb.MembersResponse) error {
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tADDRESS\tSTATUS\tTAGS")
	for _, m := range resp.GetMembers() {
		var tags []string
		for k, v := range m.GetTags() {
			tags = append(tags, k+"="+v)
		}
		sort.Strings(tags)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", cell(m.GetName()), cell(m.GetAddress()), memberStatus(m, time.Now()), cell(strings.Join(tags, ",")))
	}
	return tw.Flush()
}

// listAllServices reads every page of a ListServices listing, into one
// response.
func listAllServices(ctx context.Context, c pb.HeraldClient) (*pb.ListServicesResponse, error) {
	out := &pb.ListServicesResponse{}
	req := &pb.ListServicesRequest{PageSize: 5000}
	for range 1 << 20 {
		resp, err := c.ListServices(ctx, req)
		if err != nil {
			return nil, err
		}
		out.Services = append(out.Services, resp.GetServices()...)
		out.Revision = resp.GetRevision()
		if resp.GetNextPageToken() == "" {
			break
		}
		req.PageToken = resp.GetNextPageToken()
	}
	return out, nil
}

// listAllInstances reads every page of a ListInstances listing.
func listAllInstances(ctx context.Context, c pb.HeraldClient, service, tag string) ([]*pb.Instance, error) {
	var out []*pb.Instance
	req := &pb.ListInstancesRequest{Service: service, Tag: tag, PageSize: 5000}
	for range 1 << 20 {
		resp, err := c.ListInstances(ctx, req)
		if err != nil {
			return nil, err
		}
		out = append(out, resp.GetInstances()...)
		if resp.GetNextPageToken() == "" {
			break
		}
		req.PageToken = resp.GetNextPageToken()
	}
	return out, nil
}
