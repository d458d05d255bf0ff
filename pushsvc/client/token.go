package client

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// EnvToken names the environment variable that holds the ACL token the CLI
// and the resolver send when none is given.
const EnvToken = "HERALD_TOKEN"

// MaxTokenFileBytes bounds a token file ReadTokenFile reads.
const MaxTokenFileBytes = 4096

// WithToken sends token with every request, as the gRPC metadata
// "authorization: Bearer <token>", for agents that run with -acl-file. It
// works with and without TLS. The token must pass ValidToken, or requests
// fail. An empty token sends none (the agent's
// anonymous rules apply); the last WithToken wins.
func WithToken(token string) Option { return func(c *options) { c.token = token } }

func (o *options) tokenDialOptions() []grpc.DialOption {
	if o.token == "" {
		return nil
	}
	return []grpc.DialOption{grpc.WithPerRPCCredentials(TokenCredentials(o.token))}
}

// TokenCredentials returns per-RPC credentials that send token the way
// WithToken does, for a grpc.ClientConn made without this package:
//
//	grpc.NewClient(addr, grpc.WithPerRPCCredentials(client.TokenCredentials(tok)), ...)
func TokenCredentials(token string) credentials.PerRPCCredentials {
	return tokenCreds{header: "Bearer " + token}
}

type tokenCreds struct{ header string }

func (t tokenCreds) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": t.header}, nil
}

// RequireTransportSecurity is false: agents on loopback or a private
// network serve the API without TLS, and the token must reach them too.
// With TLS (-tls-*) the token travels encrypted.
func (tokenCreds) RequireTransportSecurity() bool { return false }

// String keeps the secret out of logs that print options.
func (tokenCreds) String() string { return "client.TokenCredentials(<redacted>)" }

// ValidToken reports why token cannot be sent, or nil: gRPC metadata carries
// printable ASCII, and agents read at most 1024 bytes of it. Spaces are
// refused too, since a token file's are trimmed.
func ValidToken(token string) error {
	if len(token) > 1024 {
		return fmt.Errorf("client: the token is %d bytes; at most 1024 are allowed", len(token))
	}
	for i := 0; i < len(token); i++ {
		if c := token[i]; c < 0x21 || c > 0x7e {
			return fmt.Errorf("client: the token holds a byte (%#x at %d) that is not printable ASCII without spaces", c, i)
		}
	}
	return nil
}

// ReadTokenFile returns the token in the file at path: its content, without
// surrounding white space (a trailing newline). The file may hold at most
// MaxTokenFileBytes. Errors name the file, never its content.
func ReadTokenFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("client: token file: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxTokenFileBytes+1))
	if err != nil {
		return "", fmt.Errorf("client: token file %s: %w", path, err)
	}
	if len(b) > MaxTokenFileBytes {
		return "", fmt.Errorf("client: token file %s is larger than %d bytes", path, MaxTokenFileBytes)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("client: token file %s is empty", path)
	}
	if strings.ContainsAny(tok, "\r\n") {
		return "", fmt.Errorf("client: token file %s holds more than one line; want the token alone", path)
	}
	return tok, nil
}
