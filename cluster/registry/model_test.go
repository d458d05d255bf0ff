package registry

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func valid() *Instance {
	return &Instance{Service: "api", ID: "api-1", Address: netip.MustParseAddr("10.0.0.5"), Port: 9000, Weight: 1}
}

func TestNormalize(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(*Instance)
		field string // "" means valid
	}{
		{"valid", func(*Instance) {}, ""},
		{"upper case service folds", func(in *Instance) { in.Service = "API" }, ""},
		{"ipv6", func(in *Instance) { in.Address = netip.MustParseAddr("fd00::1") }, ""},
		{"empty service", func(in *Instance) { in.Service = "" }, "service"},
		{"service with dot", func(in *Instance) { in.Service = "a.b" }, "service"},
		{"service with underscore", func(in *Instance) { in.Service = "a_b" }, "service"},
		{"service leading hyphen", func(in *Instance) { in.Service = "-api" }, "service"},
		{"service trailing hyphen", func(in *Instance) { in.Service = "api-" }, "service"},
		{"service 64 bytes", func(in *Instance) { in.Service = strings.Repeat("a", 64) }, "service"},
		{"service 63 bytes", func(in *Instance) { in.Service = strings.Repeat("a", 63) }, ""},
		{"empty id", func(in *Instance) { in.ID = "" }, "id"},
		{"id with space", func(in *Instance) { in.ID = "a b" }, "id"},
		{"id with control", func(in *Instance) { in.ID = "a\x01" }, "id"},
		{"id 129 bytes", func(in *Instance) { in.ID = strings.Repeat("x", 129) }, "id"},
		{"id 128 bytes", func(in *Instance) { in.ID = strings.Repeat("x", 128) }, ""},
		{"no address", func(in *Instance) { in.Address = netip.Addr{} }, "address"},
		{"zoned address", func(in *Instance) { in.Address = netip.MustParseAddr("fe80::1%eth0") }, "address"},
		{"port 0", func(in *Instance) { in.Port = 0 }, "port"},
		{"weight too big", func(in *Instance) { in.Weight = 65536 }, "weight"},
		{"weight 0 ok", func(in *Instance) { in.Weight = 0 }, ""},
		{"bad status", func(in *Instance) { in.Status = 9 }, "status"},
		{"bad tag", func(in *Instance) { in.Tags = []string{"v1", "no spaces"} }, "tag"},
		{"too many tags", func(in *Instance) { in.Tags = make([]string, MaxTags+1) }, "tags"},
		{"empty meta key", func(in *Instance) { in.Meta = map[string]string{"": "x"} }, "meta"},
		{"big meta value", func(in *Instance) { in.Meta = map[string]string{"k": strings.Repeat("v", MaxMetaValLen+1)} }, "meta"},
		{"ttl too short", func(in *Instance) { in.Check = Check{Kind: CheckTTL, TTL: time.Millisecond} }, "check.ttl"},
		{"ttl ok", func(in *Instance) { in.Check = Check{Kind: CheckTTL, TTL: 10 * time.Second} }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := valid()
			tt.edit(in)
			err := in.Normalize()
			if tt.field == "" {
				if err != nil {
					t.Fatalf("Normalize() = %v, want nil", err)
				}
				return
			}
			var fe *FieldError
			if !errors.As(err, &fe) || !errors.Is(err, ErrInvalid) {
				t.Fatalf("Normalize() = %v, want a FieldError wrapping ErrInvalid", err)
			}
			if fe.Field != tt.field {
				t.Fatalf("field = %q, want %q (%v)", fe.Field, tt.field, err)
			}
		})
	}
}

func TestNormalizeCanonicalForm(t *testing.T) {
	in := valid()
	in.Service = "API"
	in.Tags = []string{"V2", "v1", "v2"}
	in.Address = netip.MustParseAddr("::ffff:10.0.0.5")
	if err := in.Normalize(); err != nil {
		t.Fatal(err)
	}
	if in.Service != "api" || strings.Join(in.Tags, ",") != "v1,v2" || in.Address.String() != "10.0.0.5" || in.Status != StatusPassing {
		t.Fatalf("got service=%q tags=%v addr=%s status=%s", in.Service, in.Tags, in.Address, in.Status)
	}
	if !in.HasTag("v2") || in.HasTag("v3") {
		t.Fatal("HasTag wrong")
	}
}

func TestParseStatus(t *testing.T) {
	for _, s := range []Status{StatusPassing, StatusWarning, StatusCritical, StatusDraining} {
		got, err := ParseStatus(strings.ToUpper(s.String()))
		if err != nil || got != s {
			t.Fatalf("ParseStatus(%s) = %v, %v", s, got, err)
		}
	}
	if _, err := ParseStatus("sick"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("ParseStatus(sick) = %v, want ErrInvalid", err)
	}
}
