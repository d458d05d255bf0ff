package client

import (
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/herald-sd/herald/pushsvc/heraldtls"
)

// WithTransportCredentials sets the transport credentials of every agent
// connection, replacing the default insecure ones: use it for agents that
// run with -tls-ca, -tls-cert and -tls-key.
func WithTransportCredentials(creds credentials.TransportCredentials) Option {
	return WithDialOptions(grpc.WithTransportCredentials(creds))
}

// TLSCredentials loads TLS transport credentials from PEM files: the CA
// that signed the agents' certificates, and this client's certificate and
// key (made with `herald tls cert create -client NAME`), which agents with
// TLS require. Empty fields of files fall back to HERALD_TLS_CA,
// HERALD_TLS_CERT and HERALD_TLS_KEY.
func TLSCredentials(files heraldtls.Files) (credentials.TransportCredentials, error) {
	env := heraldtls.FromEnv()
	if files.CA == "" {
		files.CA = env.CA
	}
	if files.Cert == "" && files.Key == "" {
		files.Cert, files.Key = env.Cert, env.Key
	}
	cfg, err := files.ClientConfig()
	if err != nil {
		return nil, err
	}
	return credentials.NewTLS(cfg), nil
}
