package main

import (
	"strings"
	"testing"
)

func TestParseStatic(t *testing.T) {
	tests := []struct {
		scheme, list string
		want         string // joined with spaces; empty: an error
	}{
		{"ipv4", "127.0.0.1:9001", "127.0.0.1:9001"},
		{"ipv4", "127.0.0.1:9001,127.0.0.2", "127.0.0.1:9001 127.0.0.2:443"},
		{"ipv6", "[::1]:9001,::1,[::2]", "[::1]:9001 [::1]:443 [::2]:443"},
		{"ipv4", "", ""},
		{"ipv4", "::1", ""},
		{"ipv6", "127.0.0.1", ""},
		{"ipv4", "localhost:80", ""},
		{"ipv4", "127.0.0.1:0", ""},
		{"ipv4", "127.0.0.1:70000", ""},
		{"ipv4", strings.Repeat("127.0.0.1,", maxStatic) + "127.0.0.1", ""},
	}
	for _, tc := range tests {
		got, err := parseStatic(tc.scheme, tc.list)
		if tc.want == "" {
			if err == nil {
				t.Errorf("%s:%.40s: %v, want an error", tc.scheme, tc.list, got)
			}
			continue
		}
		if err != nil || strings.Join(got, " ") != tc.want {
			t.Errorf("%s:%s: %v, %v; want %s", tc.scheme, tc.list, got, err, tc.want)
		}
	}
}
