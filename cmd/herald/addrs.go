package main

import (
	"context"
	"errors"
	"flag"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/herald-sd/herald/cluster/registry"
	"github.com/herald-sd/herald/pushsvc/client"
	pb "github.com/herald-sd/herald/pushsvc/heraldpb"
)

// addrs is -addr as a list: "a,b" names two agents, tried in order.
func (cf *clientFlags) addrs() []string { return client.ParseAddrs(cf.addr) }

// agents names the agents of -addr for a message: "the agent at a" or
// "any of the agents at a, b".
func (cf *clientFlags) agents() string {
	as := cf.addrs()
	if len(as) == 1 {
		return "the agent at " + as[0]
	}
	return "any of the agents at " + strings.Join(as, ", ")
}

// validate checks the shared client flags.
func (cf *clientFlags) validate() error {
	if cf.timeout <= 0 {
		return usagef("-timeout %s: must be more than 0", cf.timeout)
	}
	return nil
}

// failover runs call against each agent of -addr in turn, each within
// -timeout, until one answers: an agent that cannot be reached (Unavailable,
// except a write the agent applied but could not store) or does not answer
// in time passes the call to the next. It returns the last error.
func (cf *clientFlags) failover(call func(ctx context.Context, c pb.HeraldClient) error) error {
	var err error
	for _, addr := range cf.addrs() {
		err = cf.callOne(addr, call)
		if !unreachable(err) {
			return err
		}
	}
	return err
}

func (cf *clientFlags) callOne(addr string, call func(ctx context.Context, c pb.HeraldClient) error) error {
	c, done, err := cf.dial(addr)
	if err != nil {
		return err
	}
	defer done()
	ctx, cancel := context.WithTimeout(context.Background(), cf.timeout)
	defer cancel()
	return call(ctx, c)
}

// unreachable reports whether err says the agent was not reached (or did
// not answer), so that the next agent may be tried.
func unreachable(err error) bool {
	if err == nil {
		return false
	}
	var ue usageError
	if errors.As(err, &ue) {
		return false
	}
	st := grpcStatus(err)
	switch st.Code() {
	case codes.Unavailable:
		return !strings.Contains(st.Message(), registry.ErrNotDurable.Error())
	case codes.DeadlineExceeded:
		return true
	}
	return false
}

// flagsBeforeArgs refuses a flag given after a positional argument, which
// Go's flag package would otherwise take as one more argument. Every
// command says the same thing.
func flagsBeforeArgs(fs *flag.FlagSet) error {
	for i, a := range fs.Args() {
		if len(a) > 1 && a[0] == '-' {
			return usagef("flag %s comes after the argument %q: flags go before arguments (run '%s -h')", a, fs.Arg(max(i-1, 0)), fs.Name())
		}
	}
	return nil
}

// noArgs refuses positional arguments for a command that takes none.
func noArgs(fs *flag.FlagSet) error {
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q: %s takes no arguments (run '%s -h')", fs.Arg(0), fs.Name(), fs.Name())
	}
	return nil
}

// packagePrefixes are the error prefixes of Herald's packages, which mean
// nothing to a person at the CLI.
var packagePrefixes = []string{"registry: ", "pushsvc: ", "cluster: ", "client: ", "acl: "}

// statusMessage is an agent's refusal in one clause: the message without
// package prefixes, led by the code's name ("not found: ...") only when the
// message does not already say it.
func statusMessage(st *status.Status) string {
	msg := st.Message()
	for trimmed := true; trimmed; {
		trimmed = false
		for _, p := range packagePrefixes {
			if strings.HasPrefix(msg, p) {
				msg, trimmed = strings.TrimPrefix(msg, p), true
			}
		}
	}
	name := strings.ToLower(codeName(st.Code()))
	if msg == "" {
		return name
	}
	if strings.Contains(strings.ToLower(msg), name) || st.Code() == codes.InvalidArgument || st.Code() == codes.Unknown {
		return msg
	}
	return name + ": " + msg
}
