package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/herald-sd/herald/pushsvc/client"
)

// tokenFlags are the ACL token flags of every client command. The token
// comes from -token, else -token-file, else $HERALD_TOKEN; none sends no
// token (the agent's anonymous rules apply).
type tokenFlags struct {
	token, file string
}

func (t *tokenFlags) register(fs *flag.FlagSet) {
	// The default stays empty even when HERALD_TOKEN is set, so that -h
	// never prints the secret.
	fs.StringVar(&t.token, "token", "", "ACL token for an agent run with -acl-file (env "+client.EnvToken+"; -token-file or the env keep it out of ps)")
	fs.StringVar(&t.file, "token-file", "", "file that holds the ACL token")
}

// resolve returns the token to send, "" for none.
func (t *tokenFlags) resolve() (string, error) {
	tok, err := t.source()
	if err == nil && tok != "" {
		if verr := client.ValidToken(tok); verr != nil {
			return "", usagef("%v", verr)
		}
	}
	return tok, err
}

func (t *tokenFlags) source() (string, error) {
	switch {
	case t.token != "" && t.file != "":
		return "", usagef("give -token or -token-file, not both")
	case t.token != "":
		return t.token, nil
	case t.file != "":
		tok, err := client.ReadTokenFile(t.file)
		if err != nil {
			return "", usagef("-token-file: %v", err)
		}
		return tok, nil
	}
	return os.Getenv(client.EnvToken), nil
}

// dialOptions sends the token on a raw gRPC connection.
func (t *tokenFlags) dialOptions() ([]grpc.DialOption, error) {
	tok, err := t.resolve()
	if err != nil || tok == "" {
		return nil, err
	}
	return []grpc.DialOption{grpc.WithPerRPCCredentials(client.TokenCredentials(tok))}, nil
}

// clientOption sends the token from a pushsvc/client.Client.
func (t *tokenFlags) clientOption() (client.Option, error) {
	tok, err := t.resolve()
	if err != nil {
		return nil, err
	}
	return client.WithToken(tok), nil
}

// aclErr explains an ACL refusal.
func aclErr(addr string, st *status.Status) error {
	msg := strings.TrimPrefix(st.Message(), "acl: ")
	if st.Code() == codes.Unauthenticated {
		return fmt.Errorf("the agent at %s refused the token: %s (give a token of its -acl-file with -token, -token-file or %s)", addr, msg, client.EnvToken)
	}
	return errors.New(msg)
}
