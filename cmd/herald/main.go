// Command herald is both the Herald agent and its command-line client.
//
//	herald agent -dev                 run a single dev node on 127.0.0.1
//	herald register -service api -id api-1 -address 10.0.0.5 -port 9000
//	herald instances api
//	herald watch api
//
// Run `herald help` for every command. Flags come before positional
// arguments, as Go's flag package expects.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
)

// exit codes
const (
	exitOK      = 0
	exitFailure = 1 // the agent refused or could not be reached
	exitUsage   = 2 // the command line was wrong
)

type command struct {
	name    string
	summary string
	run     func(args []string, stdout, stderr io.Writer) error
}

func commands() []command {
	return []command{
		{"agent", "run a Herald agent", runAgent},
		{"register", "register an instance", runRegister},
		{"deregister", "remove an instance", runDeregister},
		{"heartbeat", "renew an instance registered with -check ttl=<d>", runHeartbeat},
		{"drain", "stop new traffic to instances (one, a service's, or all the agent owns)", runDrain},
		{"undrain", "serve drained instances again", runUndrain},
		{"services", "list services", runServices},
		{"instances", "list the instances of a service", runInstances},
		{"members", "list the cluster members", runMembers},
		{"join", "make the agent join the cluster of the given Serf addresses", runJoin},
		{"force-leave", "remove a failed member now (its instances go at once)", runForceLeave},
		{"watch", "print every change of the watched services as it happens", runWatch},
		{"tls", "create a CA and certificates: `tls ca create`, `tls cert create`", runTLS},
		{"validate", "check agent config files without starting the agent", runValidate},
		{"version", "print the version (-json: as JSON)", runVersion},
		{"completion", "print a shell completion script: herald completion bash", runCompletion},
	}
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "Usage: herald <command> [flags] [args]")
	fmt.Fprintln(w, "\nCommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-11s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nClient commands talk to the agent's gRPC address: -addr, or $HERALD_ADDR (default 127.0.0.1:8700).")
	fmt.Fprintln(w, "An agent with TLS needs -tls-ca, -tls-cert and -tls-key, or $HERALD_TLS_CA, $HERALD_TLS_CERT and $HERALD_TLS_KEY.")
	fmt.Fprintln(w, "Run 'herald <command> -h' for a command's flags.")
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		usage(stdout)
		return exitOK
	case "-v", "-version", "--version":
		args[0] = "version"
	}
	if args[0] != "agent" { // the agent's logs are slog's, which quotes them
		stdout, stderr = escapingWriter{stdout}, escapingWriter{stderr}
	}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		err := c.run(args[1:], stdout, stderr)
		var ue usageError
		switch {
		case err == nil:
			return exitOK
		case errors.Is(err, flag.ErrHelp):
			return exitOK
		case errors.As(err, &ue):
			fmt.Fprintf(stderr, "herald %s: %v\n", c.name, err)
			return exitUsage
		default:
			fmt.Fprintf(stderr, "herald %s: %v\n", c.name, err)
			return exitFailure
		}
	}
	fmt.Fprintf(stderr, "herald: unknown command %q\n\n", args[0])
	usage(stderr)
	return exitUsage
}

// usageError is a mistake in the command line (exit code 2).
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }
