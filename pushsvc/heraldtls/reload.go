package heraldtls

import (
	"crypto/tls"
	"sync/atomic"
)

// Reloader serves a certificate and key that can be re-read while running
// (the agent does on SIGHUP), so that a renewed certificate takes effect
// without a restart: new TLS handshakes use it, open connections keep
// theirs. The CA is read once; changing it needs a restart.
type Reloader struct {
	files Files
	cert  atomic.Pointer[tls.Certificate]
}

// NewReloader loads f's certificate and key.
func NewReloader(f Files) (*Reloader, error) {
	r := &Reloader{files: f}
	if err := r.Reload(); err != nil {
		return nil, err
	}
	return r, nil
}

// Reload re-reads the certificate and key. On an error the previous pair
// stays in use.
func (r *Reloader) Reload() error {
	c, err := loadPair(r.files.Cert, r.files.Key)
	if err != nil {
		return err
	}
	r.cert.Store(&c)
	return nil
}

// Certificate returns the pair in use.
func (r *Reloader) Certificate() *tls.Certificate { return r.cert.Load() }

// ServerConfig is Files.ServerConfig, presenting the current certificate.
func (r *Reloader) ServerConfig() (*tls.Config, error) {
	c, err := r.files.ServerConfig()
	if err != nil {
		return nil, err
	}
	c.Certificates = nil
	c.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return r.cert.Load(), nil }
	return c, nil
}

// ClientConfig is Files.ClientConfig, presenting the current certificate.
func (r *Reloader) ClientConfig() (*tls.Config, error) {
	c, err := r.files.ClientConfig()
	if err != nil {
		return nil, err
	}
	c.Certificates = nil
	c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return r.cert.Load(), nil }
	return c, nil
}
