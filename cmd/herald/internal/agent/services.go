package agent

import (
	"context"
	"log/slog"
	"time"

	"github.com/herald-sd/herald/cluster/registry"
)

// bootServices registers the config file's services as this node's own and
// applies each reloaded list: new and changed ones are registered, removed
// ones deregistered, and the log says which.
type bootServices struct {
	reg     *registry.Registry
	log     *slog.Logger
	applied map[registry.Key]*registry.Instance
}

func (b *bootServices) apply(list []*registry.Instance) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	next := make(map[registry.Key]*registry.Instance, len(list))
	for _, in := range list {
		k := in.Key()
		next[k] = in
		old := b.applied[k]
		stored, err := b.reg.Register(ctx, in)
		switch {
		case err != nil:
			b.log.Error("config: cannot register the service", "instance", k.String(), "err", err)
		case old == nil:
			b.log.Info("config: service registered", "instance", k.String())
		case stored.Stamp != old.Stamp:
			b.log.Info("config: service changed", "instance", k.String())
		}
		if err == nil {
			next[k] = stored
		}
	}
	for k := range b.applied {
		if next[k] != nil {
			continue
		}
		if _, err := b.reg.Deregister(ctx, k); err != nil {
			b.log.Warn("config: cannot deregister the removed service", "instance", k.String(), "err", err)
			continue
		}
		b.log.Info("config: service removed", "instance", k.String())
	}
	b.applied = next
}
