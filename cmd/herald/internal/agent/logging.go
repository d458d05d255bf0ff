package agent

import (
	"context"
	"log/slog"
	"slices"
)

// UniqueAttrs wraps h so that each top-level key appears once per log
// line, the most specific value winning: a logger derived with
// With("component", "cluster") that a package derives again with
// With("component", "serf"), or that logs a record with its own
// "component", prints component=serf once. JSON log tools reject or
// mis-read a line with a repeated key.
func UniqueAttrs(h slog.Handler) slog.Handler { return &uniqueHandler{base: h} }

// uniqueHandler keeps the attributes given to WithAttrs itself and hands
// the base handler whole records, each key once. After WithGroup the
// attributes go to the base handler as they are (Herald's loggers use no
// groups).
type uniqueHandler struct {
	base  slog.Handler
	attrs []slog.Attr
}

func (u *uniqueHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return u.base.Enabled(ctx, l)
}

func (u *uniqueHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &uniqueHandler{base: u.base, attrs: merge(u.attrs, as)}
}

func (u *uniqueHandler) WithGroup(name string) slog.Handler {
	return u.base.WithAttrs(u.attrs).WithGroup(name)
}

func (u *uniqueHandler) Handle(ctx context.Context, r slog.Record) error {
	var own []slog.Attr
	r.Attrs(func(a slog.Attr) bool { own = append(own, a); return true })
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	out.AddAttrs(merge(u.attrs, own)...)
	return u.base.Handle(ctx, out)
}

// merge returns old with each key that later sets replaced in place by
// later's value, then later's new keys, each once.
func merge(old, later []slog.Attr) []slog.Attr {
	out := slices.Clone(old)
	for _, a := range later {
		if i := slices.IndexFunc(out, func(b slog.Attr) bool { return b.Key == a.Key }); i >= 0 {
			out[i] = a
		} else {
			out = append(out, a)
		}
	}
	return out
}
