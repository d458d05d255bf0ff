package main

import (
	"bytes"
	"testing"
)

func TestEscapeNonPrintable(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"api-1\tweb\n", "api-1\tweb\n"},
		{"héllo wörld ✓ 日本", "héllo wörld ✓ 日本"},
		{"id\x1b[31mred\x1b[0m", `id\x1b[31mred\x1b[0m`},
		{"\x1b]0;pwned\x07", `\x1b]0;pwned\x07`},
		{"a\rb\bc\x00d\x7f", `a\x0db\x08c\x00d\x7f`},
		{"c1\u009b31m", `c1\u009b31m`},             // 8-bit CSI, as UTF-8
		{"bidi\u202eevil", `bidi\u202eevil`},       // right-to-left override
		{"tag\U000e0041", `tag\U000e0041`},         // invisible tag character
		{"bad\xff\xc3utf8", `bad\xff\xc3utf8`},     // not UTF-8
		{`{"meta":"\u001b"}`, `{"meta":"\u001b"}`}, // JSON's own escapes pass
	} {
		if got := string(escapeNonPrintable([]byte(tc.in))); got != tc.want {
			t.Errorf("escapeNonPrintable(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if printableText([]byte(tc.in)) != (tc.in == tc.want) {
			t.Errorf("printableText(%q) = %v", tc.in, !(tc.in == tc.want))
		}
		var b bytes.Buffer
		n, err := escapingWriter{&b}.Write([]byte(tc.in))
		if err != nil || n != len(tc.in) || b.String() != tc.want {
			t.Errorf("escapingWriter(%q): wrote %q, n=%d, err=%v", tc.in, b.String(), n, err)
		}
	}
}
