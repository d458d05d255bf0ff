package agent

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/herald-sd/herald/pushsvc/acl"
)

// aclReloader rereads -acl-file on SIGHUP and hands each policy that parses
// to set. A file that does not parse leaves the previous policy in force,
// and the log says why.
type aclReloader struct {
	path    string
	set     func(*acl.Policy)
	log     *slog.Logger
	reloads *prometheus.CounterVec

	sig    chan os.Signal
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// startACLReload starts the SIGHUP listener; stop ends it.
func startACLReload(path string, set func(*acl.Policy), log *slog.Logger, reg prometheus.Registerer) (stop func(), err error) {
	r := &aclReloader{path: path, set: set, log: log, sig: make(chan os.Signal, 1)}
	r.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "herald_acl_reloads_total",
		Help: "Rereads of -acl-file on SIGHUP, by result: ok, or error (the previous ACL stays in force).",
	}, []string{"result"})
	r.reloads.WithLabelValues("ok")
	r.reloads.WithLabelValues("error")
	if err := reg.Register(r.reloads); err != nil {
		return nil, err
	}
	var ctx context.Context
	ctx, r.cancel = context.WithCancel(context.Background())
	signal.Notify(r.sig, syscall.SIGHUP)
	r.wg.Add(1)
	go r.run(ctx)
	return func() {
		signal.Stop(r.sig)
		r.cancel()
		r.wg.Wait()
	}, nil
}

func (r *aclReloader) run(ctx context.Context) {
	defer r.wg.Done()
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.sig:
			r.reload()
		}
	}
}

func (r *aclReloader) reload() {
	p, err := acl.Load(r.path)
	if err != nil {
		r.reloads.WithLabelValues("error").Inc()
		r.log.Error("SIGHUP: the ACL file was not reloaded; the previous ACL stays in force", "err", err)
		return
	}
	r.set(p)
	r.reloads.WithLabelValues("ok").Inc()
	r.log.Info("SIGHUP: reloaded the ACL file", "file", r.path, "tokens", p.Tokens(), "anonymous", p.HasAnonymous())
}
