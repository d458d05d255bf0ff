package main

import (
	"flag"
	"fmt"
	"io"
	"net"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/herald-sd/herald/pushsvc/heraldtls"
)

// tlsFlags are the TLS flags of every command that dials the agent.
type tlsFlags struct {
	files heraldtls.Files
}

func (t *tlsFlags) register(fs *flag.FlagSet) {
	env := heraldtls.FromEnv()
	fs.StringVar(&t.files.CA, "tls-ca", env.CA, "CA certificate (PEM) of an agent that serves TLS (env "+heraldtls.EnvCA+")")
	fs.StringVar(&t.files.Cert, "tls-cert", env.Cert, "client certificate (PEM), from `herald tls cert create -client NAME` (env "+heraldtls.EnvCert+")")
	fs.StringVar(&t.files.Key, "tls-key", env.Key, "the key of -tls-cert (env "+heraldtls.EnvKey+")")
}

// creds returns the transport credentials: TLS when any TLS file is named,
// else plaintext.
func (t *tlsFlags) creds() (credentials.TransportCredentials, error) {
	if !t.files.Enabled() {
		return insecure.NewCredentials(), nil
	}
	cfg, err := t.files.ClientConfig()
	if err != nil {
		return nil, usagef("%v", err)
	}
	return credentials.NewTLS(cfg), nil
}

func (t *tlsFlags) dialOption() (grpc.DialOption, error) {
	c, err := t.creds()
	if err != nil {
		return nil, err
	}
	return grpc.WithTransportCredentials(c), nil
}

// runTLS runs `herald tls ca create` and `herald tls cert create`.
func runTLS(args []string, stdout, stderr io.Writer) error {
	if len(args) < 2 {
		return usagef("want `herald tls ca create -dir DIR` or `herald tls cert create -ca-dir DIR (-node NAME [-ip IP ...] | -client NAME) [-dir OUT]`")
	}
	switch args[0] + " " + args[1] {
	case "ca create":
		return runTLSCACreate(args[2:], stdout, stderr)
	case "cert create":
		return runTLSCertCreate(args[2:], stdout, stderr)
	}
	return usagef("unknown tls command %q: want `ca create` or `cert create`", args[0]+" "+args[1])
}

func runTLSCACreate(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("herald tls ca create", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", ".", "directory to write "+heraldtls.CAFile+" and "+heraldtls.CAKeyFile+" (the key with mode 600) into")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected arguments %q", fs.Args())
	}
	cert, key, err := heraldtls.CreateCA(*dir)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s\nwrote %s (keep it secret: it signs every certificate the cluster trusts)\n", cert, key)
	return nil
}

func runTLSCertCreate(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("herald tls cert create", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var req heraldtls.CertRequest
	var ips, dnsNames multiFlag
	fs.StringVar(&req.CADir, "ca-dir", "", "directory of `herald tls ca create`")
	fs.StringVar(&req.Node, "node", "", "node name: a certificate for that agent (server and peer), naming it in a DNS SAN, with IP SANs 127.0.0.1 and ::1")
	fs.StringVar(&req.Client, "client", "", "name of a client-only certificate, for the CLI and applications (never accepted as a peer)")
	fs.Var(&ips, "ip", "extra IP SAN of a -node certificate: an address clients dial the agent on (repeatable)")
	fs.Var(&dnsNames, "dns", "extra DNS SAN of a -node certificate: a host name clients dial the agent by (repeatable)")
	fs.StringVar(&req.Dir, "dir", ".", "directory to write NAME.pem and NAME-key.pem (mode 600) into")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected arguments %q", fs.Args())
	}
	for _, s := range ips {
		ip := net.ParseIP(s)
		if ip == nil {
			return usagef("-ip %q is not an IP address", s)
		}
		req.IPs = append(req.IPs, ip)
	}
	req.DNSNames = dnsNames
	if req.CADir == "" {
		return usagef("-ca-dir is required")
	}
	cert, key, err := heraldtls.CreateCert(req)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s\nwrote %s\n", cert, key)
	return nil
}
