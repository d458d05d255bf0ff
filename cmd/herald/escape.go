package main

import (
	"fmt"
	"io"
	"unicode"
	"unicode/utf8"
)

// escapingWriter escapes what a terminal would act on instead of show:
// everything the client commands print goes through it, so that an id, a
// tag, a meta value, a node name or an agent's error message with escape
// sequences in it cannot recolour, retitle or rewrite the user's terminal.
type escapingWriter struct{ w io.Writer }

func (e escapingWriter) Write(p []byte) (int, error) {
	if printableText(p) {
		return e.w.Write(p)
	}
	if _, err := e.w.Write(escapeNonPrintable(p)); err != nil {
		return 0, err
	}
	return len(p), nil
}

// printableText reports whether p needs no escaping.
func printableText(p []byte) bool {
	for i := 0; i < len(p); {
		c := p[i]
		if c < utf8.RuneSelf {
			if c < 0x20 && c != '\n' && c != '\t' || c == 0x7f {
				return false
			}
			i++
			continue
		}
		r, n := utf8.DecodeRune(p[i:])
		if r == utf8.RuneError && n == 1 || !unicode.IsPrint(r) {
			return false
		}
		i += n
	}
	return true
}

// escapeNonPrintable returns p with every non-printable character in the
// form strconv.Quote gives it: \x1b for a control byte or a byte that is not
// UTF-8, \u009b or \U000e0001 for a rune that unicode.IsPrint rejects (C1
// controls, bidi overrides, non-ASCII spaces). Newlines and tabs stay: the
// commands' output is lines and columns. A backslash stays as it is, so the
// escaping is meant for a person's eyes, not to be reversed.
func escapeNonPrintable(p []byte) []byte {
	out := make([]byte, 0, len(p)+16)
	for i := 0; i < len(p); {
		c := p[i]
		if c < utf8.RuneSelf {
			if c < 0x20 && c != '\n' && c != '\t' || c == 0x7f {
				out = fmt.Appendf(out, `\x%02x`, c)
			} else {
				out = append(out, c)
			}
			i++
			continue
		}
		r, n := utf8.DecodeRune(p[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			out = fmt.Appendf(out, `\x%02x`, c)
		case unicode.IsPrint(r):
			out = append(out, p[i:i+n]...)
		case r <= 0xffff:
			out = fmt.Appendf(out, `\u%04x`, r)
		default:
			out = fmt.Appendf(out, `\U%08x`, r)
		}
		i += n
	}
	return out
}
