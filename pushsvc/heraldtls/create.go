package heraldtls

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"time"
)

// File names `herald tls ca create` writes in its directory.
const (
	CAFile    = "herald-ca.pem"
	CAKeyFile = "herald-ca-key.pem"
)

// Validity of what Create* makes. A CA outlives the certificates it signs;
// certificates are renewed by running the command again.
const (
	CAValidity   = 10 * 365 * 24 * time.Hour
	CertValidity = 2 * 365 * 24 * time.Hour
)

// ClientURIScheme is the URI SAN scheme of client certificates:
// herald-client:<name>.
const ClientURIScheme = "herald-client"

// CreateCA writes dir/herald-ca.pem and dir/herald-ca-key.pem (mode 0600).
// It refuses to replace an existing CA key: every certificate signed by it
// would stop being trusted.
func CreateCA(dir string) (certPath, keyPath string, err error) {
	certPath, keyPath = filepath.Join(dir, CAFile), filepath.Join(dir, CAKeyFile)
	if _, err := os.Stat(keyPath); err == nil {
		return "", "", fmt.Errorf("%w: %s already exists; remove it first to make a new CA (every certificate it signed will stop being trusted)", ErrConfig, keyPath)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "Herald CA", Organization: []string{"Herald"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(CAValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return "", "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", err
	}
	if err := writePair(certPath, keyPath, der, key); err != nil {
		return "", "", err
	}
	return certPath, keyPath, nil
}

// CertRequest describes a certificate to sign with the CA in CADir.
type CertRequest struct {
	CADir string
	// Node names a node certificate (server and client authentication,
	// DNS SAN Node, IP SANs 127.0.0.1, ::1 and IPs). Exactly one of Node
	// and Client is set.
	Node string
	// Client names a client-only certificate (URI SAN herald-client:Client).
	Client string
	// IPs are extra IP SANs of a node certificate.
	IPs []net.IP
	// DNSNames are extra DNS SANs of a node certificate.
	DNSNames []string
	// Dir receives <name>.pem and <name>-key.pem. Default: the current
	// directory.
	Dir string
}

// CreateCert signs the certificate req describes and writes it; it returns
// the paths of the certificate and of its key (mode 0600).
func CreateCert(req CertRequest) (certPath, keyPath string, err error) {
	name := req.Node
	if (req.Node == "") == (req.Client == "") {
		return "", "", fmt.Errorf("%w: give exactly one of -node and -client", ErrConfig)
	}
	if req.Client != "" {
		name = req.Client
		if len(req.IPs) > 0 || len(req.DNSNames) > 0 {
			return "", "", fmt.Errorf("%w: a client certificate has no IP or DNS names (-ip, -dns are for -node)", ErrConfig)
		}
	}
	if !validLabel(name) {
		return "", "", fmt.Errorf("%w: %q must be a DNS label (letters, digits, inner hyphens, at most 63)", ErrConfig, name)
	}
	ca, caKey, err := loadCA(req.CADir)
	if err != nil {
		return "", "", err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: name, Organization: []string{"Herald"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(CertValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	if req.Node != "" {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
		tmpl.DNSNames = append([]string{req.Node}, req.DNSNames...)
		tmpl.IPAddresses = append([]net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}, req.IPs...)
	} else {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
		tmpl.URIs = []*url.URL{{Scheme: ClientURIScheme, Opaque: name}}
	}
	if tmpl.NotAfter.After(ca.NotAfter) {
		tmpl.NotAfter = ca.NotAfter
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return "", "", err
	}
	dir := req.Dir
	if dir == "" {
		dir = "."
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", err
	}
	certPath, keyPath = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
	if err := writePair(certPath, keyPath, der, key); err != nil {
		return "", "", err
	}
	return certPath, keyPath, nil
}

func loadCA(dir string) (*x509.Certificate, any, error) {
	if dir == "" {
		return nil, nil, fmt.Errorf("%w: -ca-dir is required (the directory of `herald tls ca create`)", ErrConfig)
	}
	pair, err := loadPair(filepath.Join(dir, CAFile), filepath.Join(dir, CAKeyFile))
	if err != nil {
		return nil, nil, err
	}
	ca, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %s: %v", ErrConfig, CAFile, err)
	}
	if !ca.IsCA {
		return nil, nil, fmt.Errorf("%w: %s is not a CA certificate", ErrConfig, filepath.Join(dir, CAFile))
	}
	return ca, pair.PrivateKey, nil
}

func writePair(certPath, keyPath string, der []byte, key *ecdsa.PrivateKey) error {
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	if err := writeFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		return err
	}
	return writeFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

// writeFile replaces path atomically with data at mode perm.
func writeFile(path string, data []byte, perm os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".herald-tls-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	return n
}

func validLabel(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '-' && i > 0 && i < len(s)-1:
		default:
			return false
		}
	}
	return true
}

// IsClientOnly reports whether cert may authenticate clients but not
// servers: what `-client` certificates are.
func IsClientOnly(cert *x509.Certificate) bool {
	for _, u := range cert.ExtKeyUsage {
		if u == x509.ExtKeyUsageServerAuth || u == x509.ExtKeyUsageAny {
			return false
		}
	}
	return true
}

// Leaf parses the first certificate of a loaded pair.
func Leaf(c tls.Certificate) (*x509.Certificate, error) {
	if c.Leaf != nil {
		return c.Leaf, nil
	}
	if len(c.Certificate) == 0 {
		return nil, errors.New("heraldtls: empty certificate")
	}
	return x509.ParseCertificate(c.Certificate[0])
}
