package testenv

import (
	"net"
	"path/filepath"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/herald-sd/herald/pushsvc/heraldtls"
)

// tlsSetup is a cluster's CA and certificates (Options.TLS).
type tlsSetup struct {
	dir    string
	client credentials.TransportCredentials
}

// ClientCertName is the client certificate the test's own connections use.
const ClientCertName = "testenv"

// setupTLS creates a CA in dir, a certificate for every node (with its IP
// as an IP SAN, so that clients dialing it verify it) and the test's
// client certificate.
func (c *Cluster) setupTLS(dir string) {
	c.t.Helper()
	if _, _, err := heraldtls.CreateCA(dir); err != nil {
		c.t.Fatalf("testenv: tls: %v", err)
	}
	for _, n := range c.nodes {
		if _, _, err := heraldtls.CreateCert(heraldtls.CertRequest{CADir: dir, Node: n.Name, IPs: []net.IP{n.IP.AsSlice()}, Dir: dir}); err != nil {
			c.t.Fatalf("testenv: tls: %v", err)
		}
	}
	if _, _, err := heraldtls.CreateCert(heraldtls.CertRequest{CADir: dir, Client: ClientCertName, Dir: dir}); err != nil {
		c.t.Fatalf("testenv: tls: %v", err)
	}
	cfg, err := c.tlsFilesIn(dir, ClientCertName).ClientConfig()
	if err != nil {
		c.t.Fatalf("testenv: tls: %v", err)
	}
	c.tls = &tlsSetup{dir: dir, client: credentials.NewTLS(cfg)}
}

func (c *Cluster) tlsFilesIn(dir, name string) heraldtls.Files {
	return heraldtls.Files{
		CA:   filepath.Join(dir, heraldtls.CAFile),
		Cert: filepath.Join(dir, name+".pem"),
		Key:  filepath.Join(dir, name+"-key.pem"),
	}
}

// tlsArgs are node i's -tls-* flags; none without Options.TLS.
func (c *Cluster) tlsArgs(i int) []string {
	if c.tls == nil {
		return nil
	}
	f := c.tlsFilesIn(c.tls.dir, c.nodes[i].Name)
	return []string{"-tls-ca", f.CA, "-tls-cert", f.Cert, "-tls-key", f.Key}
}

// TLSDir is the directory of the cluster's CA (heraldtls.CAFile and
// CAKeyFile) and certificates, for a test that signs more; "" without
// Options.TLS.
func (c *Cluster) TLSDir() string {
	if c.tls == nil {
		return ""
	}
	return c.tls.dir
}

// TLSFiles are the files of the certificate name in TLSDir.
func (c *Cluster) TLSFiles(name string) heraldtls.Files { return c.tlsFilesIn(c.TLSDir(), name) }

// ClientCreds are the transport credentials of the test's connections:
// TLS with the client certificate ClientCertName, or plaintext.
func (c *Cluster) ClientCreds() credentials.TransportCredentials {
	if c.tls == nil {
		return insecure.NewCredentials()
	}
	return c.tls.client
}
