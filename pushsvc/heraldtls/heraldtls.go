// Package heraldtls owns Herald's TLS files: it loads the CA, certificate
// and key files that the agent, the CLI, the Go client, the resolver and
// the tests use, and it creates them (`herald tls ca create`, `herald tls
// cert create`).
//
// The naming convention it creates, and that package cluster checks:
//   - a node certificate names the node in a DNS SAN (`<node>`), may be used
//     for server and client authentication, and also carries the IP SANs
//     127.0.0.1 and ::1 (plus any -ip), so that tools dialing the agent on
//     loopback or by IP verify it;
//   - a client certificate (tools, applications) has no DNS or IP SAN, its
//     name only in the subject's common name and in the URI SAN
//     `herald-client:<name>`, and client authentication only, so it can
//     never pass as a server or as a peer.
//
// It is a leaf: standard library and grpc's credentials only. It never
// imports the registry, the cluster or the servers.
package heraldtls

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
)

// Environment variables the CLI and the resolver read.
const (
	EnvCA   = "HERALD_TLS_CA"
	EnvCert = "HERALD_TLS_CERT"
	EnvKey  = "HERALD_TLS_KEY"
)

// maxFileBytes bounds each PEM file read: a CA bundle of a few hundred
// certificates fits, a wrong path to a large file fails at once.
const maxFileBytes = 1 << 20

// ErrConfig is wrapped by every error about the files or their combination.
var ErrConfig = errors.New("heraldtls: bad TLS configuration")

// Files names a CA bundle and a certificate with its key, all PEM.
type Files struct {
	CA   string // trusted CA certificates
	Cert string // this side's certificate (chain)
	Key  string // its private key
}

// FromEnv returns the files named by HERALD_TLS_CA, HERALD_TLS_CERT and
// HERALD_TLS_KEY.
func FromEnv() Files {
	return Files{CA: os.Getenv(EnvCA), Cert: os.Getenv(EnvCert), Key: os.Getenv(EnvKey)}
}

// Enabled reports whether any file is named.
func (f Files) Enabled() bool { return f.CA != "" || f.Cert != "" || f.Key != "" }

// ServerConfig returns the agent's TLS config: TLS 1.2 or later with modern
// ciphers only, its certificate, and a client certificate that chains to
// the CA required from every caller (mutual TLS). All three files are
// required.
func (f Files) ServerConfig() (*tls.Config, error) {
	if f.CA == "" || f.Cert == "" || f.Key == "" {
		return nil, fmt.Errorf("%w: the agent needs all of -tls-ca, -tls-cert and -tls-key (have %q, %q, %q)", ErrConfig, f.CA, f.Cert, f.Key)
	}
	pool, err := loadPool(f.CA)
	if err != nil {
		return nil, err
	}
	cert, err := loadPair(f.Cert, f.Key)
	if err != nil {
		return nil, err
	}
	c := baseConfig()
	c.Certificates = []tls.Certificate{cert}
	c.ClientCAs = pool
	c.ClientAuth = tls.RequireAndVerifyClientCert
	return c, nil
}

// ClientConfig returns a config that trusts the CA and, when Cert and Key
// are set, presents that certificate (the agent requires one). CA is
// required; Cert and Key go together. ServerName is left empty: grpc sets
// it from the dialed address, a peer sets the node name.
func (f Files) ClientConfig() (*tls.Config, error) {
	if f.CA == "" {
		return nil, fmt.Errorf("%w: a TLS client needs the CA file (-tls-ca or %s)", ErrConfig, EnvCA)
	}
	if (f.Cert == "") != (f.Key == "") {
		return nil, fmt.Errorf("%w: the client certificate and its key go together (-tls-cert %q, -tls-key %q)", ErrConfig, f.Cert, f.Key)
	}
	pool, err := loadPool(f.CA)
	if err != nil {
		return nil, err
	}
	c := baseConfig()
	c.RootCAs = pool
	if f.Cert != "" {
		cert, err := loadPair(f.Cert, f.Key)
		if err != nil {
			return nil, err
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

// baseConfig is TLS 1.2+ with AEAD ECDHE suites only (TLS 1.3 suites are
// not configurable and all modern).
func baseConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		CipherSuites: []uint16{
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
		},
	}
}

func loadPool(path string) (*x509.CertPool, error) {
	b, err := readBounded(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%w: %s holds no PEM certificate", ErrConfig, path)
	}
	return pool, nil
}

func loadPair(certPath, keyPath string) (tls.Certificate, error) {
	cb, err := readBounded(certPath)
	if err != nil {
		return tls.Certificate{}, err
	}
	kb, err := readBounded(keyPath)
	if err != nil {
		return tls.Certificate{}, err
	}
	cert, err := tls.X509KeyPair(cb, kb)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("%w: certificate %s with key %s: %v", ErrConfig, certPath, keyPath, err)
	}
	return cert, nil
}

// readBounded reads a file of at most maxFileBytes.
func readBounded(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%w: read %s: %v", ErrConfig, path, err)
	}
	if len(b) > maxFileBytes {
		return nil, fmt.Errorf("%w: %s is larger than %d bytes; is it a PEM file?", ErrConfig, path, maxFileBytes)
	}
	return b, nil
}
