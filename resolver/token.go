package resolver

import (
	"os"

	"github.com/herald-sd/herald/pushsvc/client"
)

// WithToken makes every resolver of the builder send token to its agents,
// for agents that run with -acl-file: the token needs read on the resolved
// services. It overrides HERALD_TOKEN, which the resolvers send otherwise.
func WithToken(token string) Option { return WithClientOptions(client.WithToken(token)) }

// envToken is the client option for HERALD_TOKEN (none when it is unset);
// an explicit WithToken, applied after it, wins.
func envToken() client.Option { return client.WithToken(os.Getenv(client.EnvToken)) }
