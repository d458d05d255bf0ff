package resolver

import (
	"google.golang.org/grpc/credentials"

	"github.com/herald-sd/herald/pushsvc/client"
)

// WithTransportCredentials sets the credentials the resolver's watch
// connections to the agents use (agents with -tls-ca, -tls-cert and
// -tls-key need TLS credentials, for example client.TLSCredentials). They
// are not the credentials of the application's own connection to the
// resolved backends, which grpc.NewClient takes as usual.
func WithTransportCredentials(creds credentials.TransportCredentials) Option {
	return WithClientOptions(client.WithTransportCredentials(creds))
}
