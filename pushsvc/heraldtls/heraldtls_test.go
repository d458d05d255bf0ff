package heraldtls

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func parseCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	pair, err := loadPair(path, strings.TrimSuffix(path, ".pem")+"-key.pem")
	if err != nil {
		t.Fatal(err)
	}
	c, err := Leaf(pair)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// The CA, a node certificate and a client certificate have the names,
// usages and file modes the package documents, and chain to the CA.
func TestCreate(t *testing.T) {
	dir := t.TempDir()
	caCert, caKey, err := CreateCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := CreateCA(dir); !errors.Is(err, ErrConfig) {
		t.Errorf("a second CreateCA in the same dir: %v, want a refusal", err)
	}
	nodeCert, nodeKey, err := CreateCert(CertRequest{CADir: dir, Node: "n1", IPs: []net.IP{net.ParseIP("10.1.2.3")}, DNSNames: []string{"herald-1.example"}, Dir: filepath.Join(dir, "out")})
	if err != nil {
		t.Fatal(err)
	}
	clientCert, clientKey, err := CreateCert(CertRequest{CADir: dir, Client: "ops", Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if nodeCert != filepath.Join(dir, "out", "n1.pem") || nodeKey != filepath.Join(dir, "out", "n1-key.pem") {
		t.Errorf("node files %s %s", nodeCert, nodeKey)
	}
	for _, p := range []string{caKey, nodeKey, clientKey} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", p, fi.Mode().Perm())
		}
	}
	pool, err := loadPool(caCert)
	if err != nil {
		t.Fatal(err)
	}
	node := parseCert(t, nodeCert)
	if !slices.Equal(node.DNSNames, []string{"n1", "herald-1.example"}) {
		t.Errorf("node DNS SANs %v", node.DNSNames)
	}
	for _, ip := range []string{"127.0.0.1", "::1", "10.1.2.3"} {
		if !slices.ContainsFunc(node.IPAddresses, func(a net.IP) bool { return a.Equal(net.ParseIP(ip)) }) {
			t.Errorf("node IP SANs %v lack %s", node.IPAddresses, ip)
		}
	}
	for _, u := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if _, err := node.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{u}, DNSName: "n1"}); err != nil {
			t.Errorf("node certificate for usage %v: %v", u, err)
		}
	}
	if IsClientOnly(node) {
		t.Error("a node certificate reads as client-only")
	}
	client := parseCert(t, clientCert)
	if len(client.DNSNames)+len(client.IPAddresses) != 0 || len(client.URIs) != 1 || client.URIs[0].String() != "herald-client:ops" {
		t.Errorf("client SANs: dns %v ip %v uri %v", client.DNSNames, client.IPAddresses, client.URIs)
	}
	if !IsClientOnly(client) {
		t.Error("a client certificate may authenticate servers")
	}
	if _, err := client.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("client certificate: %v", err)
	}
	if _, err := client.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err == nil {
		t.Error("a client certificate verified for server authentication")
	}

	srv, err := Files{CA: caCert, Cert: nodeCert, Key: nodeKey}.ServerConfig()
	if err != nil {
		t.Fatal(err)
	}
	if srv.ClientAuth != tls.RequireAndVerifyClientCert || srv.MinVersion < tls.VersionTLS12 {
		t.Errorf("server config: client auth %v, min version %x", srv.ClientAuth, srv.MinVersion)
	}
}

// Bad requests and bad files fail with ErrConfig and a message naming the
// problem.
func TestRefusals(t *testing.T) {
	dir := t.TempDir()
	if _, _, err := CreateCA(dir); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big.pem")
	if err := os.WriteFile(big, make([]byte, maxFileBytes+1), 0o600); err != nil {
		t.Fatal(err)
	}
	ca := filepath.Join(dir, CAFile)
	for _, tc := range []struct {
		name string
		run  func() error
		want string
	}{
		{"node and client", func() error { _, _, err := CreateCert(CertRequest{CADir: dir, Node: "a", Client: "b"}); return err }, "exactly one"},
		{"neither", func() error { _, _, err := CreateCert(CertRequest{CADir: dir}); return err }, "exactly one"},
		{"bad name", func() error { _, _, err := CreateCert(CertRequest{CADir: dir, Node: "a/../b"}); return err }, "DNS label"},
		{"client with IP", func() error {
			_, _, err := CreateCert(CertRequest{CADir: dir, Client: "c", IPs: []net.IP{net.IPv4(1, 2, 3, 4)}})
			return err
		}, "no IP"},
		{"no CA dir", func() error { _, _, err := CreateCert(CertRequest{Node: "a"}); return err }, "-ca-dir"},
		{"missing CA", func() error { _, _, err := CreateCert(CertRequest{CADir: t.TempDir(), Node: "a"}); return err }, "no such file"},
		{"server without key", func() error { _, err := (Files{CA: ca, Cert: ca}).ServerConfig(); return err }, "all of"},
		{"client cert without key", func() error { _, err := (Files{CA: ca, Cert: ca}).ClientConfig(); return err }, "go together"},
		{"client without CA", func() error { _, err := (Files{}).ClientConfig(); return err }, "CA file"},
		{"oversized file", func() error { _, err := (Files{CA: big}).ClientConfig(); return err }, "larger than"},
		{"not PEM", func() error { _, err := (Files{CA: filepath.Join(dir, "big.pem")}).ClientConfig(); return err }, "larger than"},
		{"key that is not the certificate's", func() error {
			_, _, err := CreateCert(CertRequest{CADir: dir, Node: "x", Dir: dir})
			if err != nil {
				return err
			}
			_, err = (Files{CA: ca, Cert: filepath.Join(dir, "x.pem"), Key: filepath.Join(dir, CAKeyFile)}).ServerConfig()
			return err
		}, "private key does not match"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.run()
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v; want ErrConfig mentioning %q", err, tc.want)
			}
		})
	}
}
