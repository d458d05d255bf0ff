package acl

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
)

// Bounds of an ACL file. They keep a mistaken or hostile file from costing
// the agent much memory or time per request.
const (
	// MaxFileBytes bounds the file Load reads.
	MaxFileBytes = 1 << 20
	// MaxTokens bounds the tokens of a policy: Authenticate compares the
	// presented token with each of them.
	MaxTokens = 1000
	// MaxRules bounds the service rules of one token (or of anonymous).
	MaxRules = 1000
	// maxNameLen bounds a token's name.
	maxNameLen = 64
	// maxPatternLen: a service name is a DNS label of at most 63 bytes, plus
	// the * of a prefix rule.
	maxPatternLen = 64
)

// file is the JSON form of an ACL file.
type file struct {
	Anonymous *anonymousJSON `json:"anonymous"`
	Tokens    []tokenJSON    `json:"tokens"`
}

type anonymousJSON struct {
	Services map[string]string `json:"services"`
}

type tokenJSON struct {
	Name         string            `json:"name"`
	Secret       string            `json:"secret"`
	SecretSHA256 string            `json:"secret_sha256"`
	Operator     bool              `json:"operator"`
	Services     map[string]string `json:"services"`
}

// Load reads and parses the ACL file at path. Its errors name the file.
func Load(path string) (*Policy, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("acl: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("acl: read %s: %w", path, err)
	}
	if len(data) > MaxFileBytes {
		return nil, fmt.Errorf("acl: %s is larger than %d bytes", path, MaxFileBytes)
	}
	p, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("acl: %s: %w", path, err)
	}
	return p, nil
}

// Parse parses an ACL file's JSON. Errors name the field and the rule it
// breaks (unknown keys included); none of them quotes a secret.
func Parse(data []byte) (*Policy, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var f file
	if err := dec.Decode(&f); err != nil {
		return nil, jsonError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("unexpected data after the JSON object")
	}
	if len(f.Tokens) > MaxTokens {
		return nil, fmt.Errorf("tokens: %d given; at most %d are allowed", len(f.Tokens), MaxTokens)
	}
	p := &Policy{}
	if f.Anonymous != nil {
		r, err := parseRules("anonymous.services", f.Anonymous.Services)
		if err != nil {
			return nil, err
		}
		p.anonymous = &Principal{name: "anonymous", anon: true, rules: r}
	}
	names := map[string]bool{}
	digests := map[[sha256.Size]byte]string{}
	for i, t := range f.Tokens {
		field := fmt.Sprintf("tokens[%d]", i)
		if err := validTokenName(t.Name); err != nil {
			return nil, fmt.Errorf("%s.name: %w", field, err)
		}
		field = fmt.Sprintf("tokens[%d] (%q)", i, t.Name)
		if names[t.Name] {
			return nil, fmt.Errorf("%s.name: another token has this name", field)
		}
		names[t.Name] = true
		pr := &Principal{name: t.Name, operator: t.Operator}
		switch {
		case t.Secret != "" && t.SecretSHA256 != "":
			return nil, fmt.Errorf("%s: give secret or secret_sha256, not both", field)
		case t.Secret != "":
			if !printableASCII(t.Secret) {
				return nil, fmt.Errorf("%s.secret: use printable ASCII without spaces, which gRPC metadata can carry", field)
			}
			pr.digest = Digest(t.Secret)
		case t.SecretSHA256 != "":
			b, err := hex.DecodeString(strings.TrimSpace(t.SecretSHA256))
			if err != nil || len(b) != sha256.Size {
				return nil, fmt.Errorf("%s.secret_sha256: want 64 hex digits, the sha256 of the secret (printf %%s SECRET | sha256sum)", field)
			}
			copy(pr.digest[:], b)
		default:
			return nil, fmt.Errorf("%s: secret or secret_sha256 is required", field)
		}
		if other, ok := digests[pr.digest]; ok {
			return nil, fmt.Errorf("%s: has the same secret as token %q; each token needs its own", field, other)
		}
		digests[pr.digest] = t.Name
		r, err := parseRules(field+".services", t.Services)
		if err != nil {
			return nil, err
		}
		pr.rules = r
		p.tokens = append(p.tokens, pr)
	}
	return p, nil
}

// jsonError rewords the decoder's errors: an unknown key names the key.
func jsonError(err error) error {
	const unknown = "json: unknown field "
	if msg := err.Error(); strings.HasPrefix(msg, unknown) {
		return fmt.Errorf("unknown key %s (allowed: anonymous.services; tokens[].name, secret, secret_sha256, operator, services)", strings.TrimPrefix(msg, unknown))
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Errorf("invalid JSON at byte %d: %v", se.Offset, err)
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Errorf("%s: want a JSON %s, not %s", te.Field, te.Type, te.Value)
	}
	if errors.Is(err, io.EOF) {
		return errors.New("empty file; want a JSON object")
	}
	return fmt.Errorf("invalid JSON: %v", err)
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

func validTokenName(n string) error {
	if n == "" {
		return errors.New("is required")
	}
	if len(n) > maxNameLen {
		return fmt.Errorf("is %d bytes; at most %d are allowed", len(n), maxNameLen)
	}
	for _, c := range []byte(n) {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c == '.':
		default:
			return fmt.Errorf("%q: use letters, digits, '-', '_' and '.'", n)
		}
	}
	if n == "anonymous" {
		return errors.New(`"anonymous" is reserved for requests without a token; use the top-level "anonymous" key`)
	}
	return nil
}

func parseRules(field string, in map[string]string) (rules, error) {
	r := rules{exact: map[string]Access{}, prefix: map[string]Access{}}
	if len(in) > MaxRules {
		return r, fmt.Errorf("%s: %d rules; at most %d are allowed", field, len(in), MaxRules)
	}
	for pat, level := range in {
		var a Access
		switch level {
		case "read":
			a = Read
		case "write":
			a = Write
		case "deny":
			a = Deny
		default:
			return r, fmt.Errorf("%s[%q]: %q is not read, write or deny", field, pat, level)
		}
		name, isPrefix := strings.CutSuffix(pat, "*")
		if err := validPattern(name, isPrefix); err != nil || len(pat) > maxPatternLen {
			return r, fmt.Errorf("%s[%q]: want a service name, a prefix followed by * (web-*), or * alone", field, pat)
		}
		name = strings.ToLower(name)
		if isPrefix {
			if _, dup := r.prefix[name]; dup {
				return r, fmt.Errorf("%s[%q]: the same rule is given twice (names are case-insensitive)", field, pat)
			}
			r.prefix[name] = a
		} else {
			if _, dup := r.exact[name]; dup {
				return r, fmt.Errorf("%s[%q]: the same rule is given twice (names are case-insensitive)", field, pat)
			}
			r.exact[name] = a
		}
	}
	for p := range r.prefix {
		if !slices.Contains(r.prefixLens, len(p)) {
			r.prefixLens = append(r.prefixLens, len(p))
		}
	}
	slices.SortFunc(r.prefixLens, func(a, b int) int { return cmp.Compare(b, a) })
	return r, nil
}

// validPattern checks the name part of a rule: a service name (a DNS label)
// or, for a prefix rule, the start of one (it may end in a hyphen, or be
// empty for *).
func validPattern(s string, isPrefix bool) error {
	if s == "" && !isPrefix {
		return errors.New("empty")
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '-' && i > 0 && (isPrefix || i < len(s)-1):
		default:
			return errors.New("not a label")
		}
	}
	return nil
}
