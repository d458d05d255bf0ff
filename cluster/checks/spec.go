package checks

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/herald-sd/herald/cluster/registry"
)

// ParseSpec parses the command-line form of an active check:
//
//	tcp=HOST:PORT[,option=value...]
//	http=URL[,option=value...]
//	grpc=HOST:PORT[/SERVICE][,option=value...]
//
// with the options interval, timeout and deregister-after (Go durations)
// and success-before-passing and failures-before-critical (counts). It
// reports ok=false when spec is not an active check (ttl=..., session),
// and an error naming the part that is wrong otherwise. The registry fills
// the defaults and checks the bounds.
func ParseSpec(spec string) (c registry.Check, ok bool, err error) {
	kind, rest, _ := strings.Cut(spec, "=")
	switch kind {
	case "tcp":
		c.Kind = registry.CheckTCP
	case "http":
		c.Kind = registry.CheckHTTP
	case "grpc":
		c.Kind = registry.CheckGRPC
	default:
		return c, false, nil
	}
	// A URL may hold commas in its query; options follow the last part
	// that is not name=value with a known name.
	parts := strings.Split(rest, ",")
	i := len(parts)
	for i > 1 && isOption(parts[i-1]) {
		i--
	}
	c.Target = strings.Join(parts[:i], ",")
	if c.Target == "" {
		return c, true, fmt.Errorf("%s check: the target is missing: want %s=%s", kind, kind, targetForm(c.Kind))
	}
	for _, opt := range parts[i:] {
		name, val, _ := strings.Cut(opt, "=")
		switch name {
		case "interval", "timeout", "deregister-after":
			d, err := time.ParseDuration(val)
			if err != nil || d < 0 {
				return c, true, fmt.Errorf("%s check: %s=%q: want a positive Go duration such as 10s", kind, name, val)
			}
			switch name {
			case "interval":
				c.Interval = d
			case "timeout":
				c.Timeout = d
			default:
				c.DeregisterAfter = d
			}
		case "success-before-passing", "failures-before-critical":
			n, err := strconv.ParseUint(val, 10, 32)
			if err != nil || n == 0 || n > registry.MaxCheckThreshold {
				return c, true, fmt.Errorf("%s check: %s=%q: want a count from 1 to %d", kind, name, val, registry.MaxCheckThreshold)
			}
			if name == "success-before-passing" {
				c.SuccessBeforePassing = uint32(n)
			} else {
				c.FailuresBeforeCritical = uint32(n)
			}
		}
	}
	return c, true, nil
}

var optionNames = []string{"interval", "timeout", "deregister-after", "success-before-passing", "failures-before-critical"}

func isOption(s string) bool {
	name, _, ok := strings.Cut(s, "=")
	if !ok {
		return false
	}
	for _, n := range optionNames {
		if n == name {
			return true
		}
	}
	return false
}

func targetForm(k registry.CheckKind) string {
	switch k {
	case registry.CheckHTTP:
		return "http://HOST:PORT/PATH"
	case registry.CheckGRPC:
		return "HOST:PORT[/SERVICE]"
	}
	return "HOST:PORT"
}

// Spec is the command-line form of an active check, the inverse of
// ParseSpec, with every option spelt out.
func Spec(c registry.Check) string {
	s := fmt.Sprintf("%s=%s,interval=%s,timeout=%s", c.Kind, c.Target, c.Interval, c.Timeout)
	if c.DeregisterAfter > 0 {
		s += ",deregister-after=" + c.DeregisterAfter.String()
	}
	if c.SuccessBeforePassing > 1 {
		s += fmt.Sprintf(",success-before-passing=%d", c.SuccessBeforePassing)
	}
	if c.FailuresBeforeCritical > 1 {
		s += fmt.Sprintf(",failures-before-critical=%d", c.FailuresBeforeCritical)
	}
	return s
}
