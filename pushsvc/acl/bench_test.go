package acl_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/herald-sd/herald/pushsvc/acl"
)

// BenchmarkAuthorize is what one API request pays with -acl-file: the digest
// of the presented token, its constant-time comparison with every token of
// the policy, and the most specific rule for the service.
func BenchmarkAuthorize(b *testing.B) {
	for _, tokens := range []int{2, 100, acl.MaxTokens} {
		b.Run(fmt.Sprintf("tokens=%d", tokens), func(b *testing.B) {
			var s strings.Builder
			s.WriteString(`{"tokens": [`)
			for i := range tokens {
				if i > 0 {
					s.WriteString(",")
				}
				fmt.Fprintf(&s, `{"name": "t%d", "secret": "secret-%d", "services": {"api": "write", "web-*": "read", "*": "deny"}}`, i, i)
			}
			s.WriteString(`]}`)
			p, err := acl.Parse([]byte(s.String()))
			if err != nil {
				b.Fatal(err)
			}
			secret := fmt.Sprintf("secret-%d", tokens-1)
			b.ReportAllocs()
			for b.Loop() {
				pr, err := p.Authenticate(true, acl.Digest(secret))
				if err != nil {
					b.Fatal(err)
				}
				if err := pr.Authorize(acl.Read, "web-frontend"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
