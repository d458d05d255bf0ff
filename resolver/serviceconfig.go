package resolver

import (
	grpcresolver "google.golang.org/grpc/resolver"
	"google.golang.org/grpc/serviceconfig"
)

// DefaultServiceConfig is the service config every herald resolver hands
// its ClientConn unless WithServiceConfig replaces it:
//
//   - the weighted balancer (BalancerName), so weights move traffic;
//   - for every method, up to 4 attempts on UNAVAILABLE with a 10ms to
//     100ms backoff, so an RPC that a draining or deregistered backend
//     refuses (the guard in pushsvc/client) is retried on another one
//     and the caller never sees the refusal.
//
// A refusal is safe to retry for any method: the backend did not run it.
// But grpc also retries an RPC that failed with UNAVAILABLE for another
// reason (a connection lost before the server answered), where the server
// may have run it. For methods that must never run twice, give them a
// methodConfig without retryPolicy (see the README, "Traffic control").
const DefaultServiceConfig = `{
  "loadBalancingConfig": [{"herald_weighted": {}}],
  "methodConfig": [{
    "name": [{}],
    "retryPolicy": {
      "maxAttempts": 4,
      "initialBackoff": "0.01s",
      "maxBackoff": "0.1s",
      "backoffMultiplier": 2,
      "retryableStatusCodes": ["UNAVAILABLE"]
    }
  }]
}`

// WithServiceConfig replaces DefaultServiceConfig with js (a gRPC service
// config in JSON). An empty js makes the resolver supply none, so that the
// ClientConn's grpc.WithDefaultServiceConfig applies (grpc-go prefers a
// resolver's service config to the default one). A js that does not parse
// makes the ClientConn fail its RPCs with the parse error.
func WithServiceConfig(js string) Option {
	return func(b *builderOptions) { b.serviceConfig, b.serviceConfigSet = js, true }
}

// serviceConfig parses the configured service config for cc once per
// resolver; nil means none.
func (b *builder) serviceConfig(cc grpcresolver.ClientConn) *serviceconfig.ParseResult {
	js := DefaultServiceConfig
	if b.opts.serviceConfigSet {
		js = b.opts.serviceConfig
	}
	if js == "" {
		return nil
	}
	return cc.ParseServiceConfig(js)
}
