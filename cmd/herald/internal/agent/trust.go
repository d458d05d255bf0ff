package agent

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/herald-sd/herald/pushsvc/heraldtls"
)

// maxEncryptFileBytes bounds -encrypt-file: a base64 key of 32 bytes is 44
// characters; the bound leaves room for a newline and stray whitespace.
const maxEncryptFileBytes = 256

// encryptKey returns the gossip key: -encrypt, or the content of
// -encrypt-file (surrounding whitespace and a trailing newline dropped).
// The file must not be readable or writable by others (chmod 600): the key
// is the cluster's secret. The cluster package checks the key itself.
func (c Config) encryptKey() (string, error) {
	if c.EncryptFile == "" {
		return c.Encrypt, nil
	}
	if c.Encrypt != "" {
		return "", fmt.Errorf("agent: give -encrypt or -encrypt-file, not both")
	}
	f, err := os.Open(c.EncryptFile)
	if err != nil {
		return "", fmt.Errorf("agent: -encrypt-file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("agent: -encrypt-file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("agent: -encrypt-file %s is not a regular file", c.EncryptFile)
	}
	if perm := fi.Mode().Perm(); perm&0o007 != 0 {
		return "", fmt.Errorf("agent: -encrypt-file %s has mode %v: other users can read or change the cluster key; run chmod 600 %s", c.EncryptFile, perm, c.EncryptFile)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxEncryptFileBytes+1))
	if err != nil {
		return "", fmt.Errorf("agent: -encrypt-file: %w", err)
	}
	if len(b) > maxEncryptFileBytes {
		return "", fmt.Errorf("agent: -encrypt-file %s is larger than %d bytes; it must hold one base64 key (16, 24 or 32 bytes, e.g. from `head -c 32 /dev/urandom | base64`)", c.EncryptFile, maxEncryptFileBytes)
	}
	key := strings.TrimSpace(string(b))
	if key == "" {
		return "", fmt.Errorf("agent: -encrypt-file %s is empty; it must hold one base64 key", c.EncryptFile)
	}
	return key, nil
}

// tlsFiles are the agent's -tls-* files.
func (c Config) tlsFiles() heraldtls.Files {
	return heraldtls.Files{CA: c.TLSCA, Cert: c.TLSCert, Key: c.TLSKey}
}

// tlsConfigs loads the gRPC server's config (mutual TLS) and the config
// peers are dialed with, both presenting the certificate of rl, which
// SIGHUP re-reads; all nil without -tls-* flags.
func (c Config) tlsConfigs() (server, peer *tls.Config, rl *heraldtls.Reloader, err error) {
	f := c.tlsFiles()
	if !f.Enabled() {
		return nil, nil, nil, nil
	}
	if _, err = f.ServerConfig(); err != nil { // all three files, and their checks
		return nil, nil, nil, fmt.Errorf("agent: %w", err)
	}
	if rl, err = heraldtls.NewReloader(f); err != nil {
		return nil, nil, nil, fmt.Errorf("agent: %w", err)
	}
	// Peers refuse a certificate that does not name this node: say so now.
	if leaf, err := heraldtls.Leaf(*rl.Certificate()); err != nil || !slices.Contains(leaf.DNSNames, c.Node) || heraldtls.IsClientOnly(leaf) {
		names := []string(nil)
		if leaf != nil {
			names = leaf.DNSNames
		}
		return nil, nil, nil, fmt.Errorf("agent: -tls-cert %s is not a node certificate for -node %q (it names %v); make one with `herald tls cert create -ca-dir DIR -node %s`", c.TLSCert, c.Node, names, c.Node)
	}
	if server, err = rl.ServerConfig(); err != nil {
		return nil, nil, nil, fmt.Errorf("agent: %w", err)
	}
	if peer, err = rl.ClientConfig(); err != nil {
		return nil, nil, nil, fmt.Errorf("agent: %w", err)
	}
	return server, peer, rl, nil
}

// reloadOnHUP re-reads the TLS certificate and key on each SIGHUP until
// ctx ends. A failed reload keeps the certificate in use and says why.
func reloadOnHUP(ctx context.Context, log *slog.Logger, rl *heraldtls.Reloader) {
	if rl == nil {
		return
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		defer signal.Stop(hup)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				if err := rl.Reload(); err != nil {
					log.Error("SIGHUP: could not reload the TLS certificate; keeping the one in use", "err", err)
					continue
				}
				var expires time.Time
				if leaf, err := heraldtls.Leaf(*rl.Certificate()); err == nil {
					expires = leaf.NotAfter
				}
				log.Info("SIGHUP: reloaded the TLS certificate and key; new connections use them", "expires", expires)
			}
		}
	}()
}

// warnTrust tells the operator, at start-up, who can change what this
// cluster serves. It changes nothing and /readyz stays green.
func warnTrust(log *slog.Logger, cfg Config, tlsOn, keyOn bool) {
	if cfg.Dev {
		return
	}
	switch {
	case !tlsOn && !keyOn:
		log.Warn("SECURITY: this cluster has no shared secret (no -tls-ca/-tls-cert/-tls-key, no -encrypt key): anyone who can reach this node's gRPC port ("+cfg.GRPCAddr+"), HTTP API ("+cfg.HTTPAddr+", unless -acl-file) or Serf port ("+cfg.Bind+") can rewrite the services the whole cluster serves, and mark nodes failed. Keep these ports on a trusted network, or see \"Securing Herald\" in the README",
			"grpc", cfg.GRPCAddr, "http", cfg.HTTPAddr, "serf", cfg.Bind)
	case tlsOn && !keyOn:
		log.Warn("SECURITY: gossip is not encrypted (no -encrypt key): peers and the API need TLS certificates, but anyone who reaches the Serf port ("+cfg.Bind+") can forge membership and make nodes look failed. Add -encrypt-file", "serf", cfg.Bind)
	case !tlsOn && keyOn:
		log.Info("peers prove they hold the -encrypt key to replicate; without -tls-* the gRPC API is open to anyone who reaches it and its traffic is not encrypted", "grpc", cfg.GRPCAddr)
	}
}
