package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/herald-sd/herald/cluster/checks"
	"github.com/herald-sd/herald/cluster/registry"
)

// The agent's config file: -config-file FILE and -config-dir DIR (its
// *.json files in name order). Each file is one JSON object whose keys are
// the agent's flag names without the dash ("node", "bind", "join",
// "log-level", ...), plus "services", the instances this node registers at
// start and keeps as its own:
//
//	{"node": "n1", "bind": "10.0.0.1:7946", "retry-join": ["10.0.0.2:7946"],
//	 "services": [{"service": "api", "id": "api-1", "address": "10.0.0.5", "port": 9000,
//	   "tags": ["v1"], "check": "http=http://10.0.0.5:9000/health,interval=5s"}]}
//
// A flag given on the command line wins over the files; among files, a
// later one wins. A key that is no flag is an error naming it and its file.
// SIGHUP rereads the files: the log level and the services take effect at
// once, any other change is logged as waiting for a restart.

// Bounds on what the config files may hold.
const (
	maxConfigBytes    = 1 << 20 // per file
	maxConfigFiles    = 256     // in -config-dir
	maxConfigServices = 10000   // in all files
)

// serviceDef is one element of "services".
type serviceDef struct {
	Service string            `json:"service"`
	ID      string            `json:"id"`
	Address string            `json:"address"`
	Port    uint16            `json:"port"`
	Tags    []string          `json:"tags"`
	Meta    map[string]string `json:"meta"`
	Weight  *uint32           `json:"weight"`
	Status  string            `json:"status"`
	// Check is the -check syntax: "", "ttl=30s", or tcp=, http=, grpc=.
	Check string `json:"check"`
}

// configEntry is one flag set by a file.
type configEntry struct {
	file, key string
	values    []string
}

// parsedConfig is what the files say.
type parsedConfig struct {
	entries  []configEntry // in file order; later ones win
	services []*registry.Instance
}

// value returns the values a key has in the files (the last file's).
func (pc parsedConfig) value(key string) ([]string, bool) {
	for i := len(pc.entries) - 1; i >= 0; i-- {
		if pc.entries[i].key == key {
			return pc.entries[i].values, true
		}
	}
	return nil, false
}

// configFiles lists -config-file, then -config-dir's *.json files.
func configFiles(file, dir string) ([]string, error) {
	var files []string
	if file != "" {
		files = append(files, file)
	}
	if dir != "" {
		matches, err := filepath.Glob(filepath.Join(dir, "*.json"))
		if err != nil {
			return nil, usagef("-config-dir %s: %v", dir, err)
		}
		if _, err := os.Stat(dir); err != nil {
			return nil, usagef("-config-dir: %v", err)
		}
		if len(matches) > maxConfigFiles {
			return nil, usagef("-config-dir %s: %d files; at most %d are read", dir, len(matches), maxConfigFiles)
		}
		sort.Strings(matches)
		files = append(files, matches...)
	}
	return files, nil
}

// readConfig reads and checks the files against the agent's flags.
func readConfig(files []string, fs *flag.FlagSet) (parsedConfig, error) {
	var pc parsedConfig
	for _, file := range files {
		if err := readConfigFile(file, fs, &pc); err != nil {
			return pc, err
		}
	}
	return pc, nil
}

func readConfigFile(file string, fs *flag.FlagSet, pc *parsedConfig) error {
	f, err := os.Open(file)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxConfigBytes+1))
	if err != nil {
		return fmt.Errorf("config %s: %w", file, err)
	}
	if len(data) > maxConfigBytes {
		return fmt.Errorf("config %s: larger than %d bytes", file, maxConfigBytes)
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil {
		return fmt.Errorf("config %s: not a JSON object: %v", file, err)
	}
	keys := make([]string, 0, len(top))
	for k := range top {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, key := range keys {
		raw := top[key]
		if key == "services" {
			if err := readServices(file, raw, pc); err != nil {
				return err
			}
			continue
		}
		if fs.Lookup(key) == nil || key == "config-file" || key == "config-dir" {
			return fmt.Errorf("config %s: unknown key %q (the keys are the agent's flag names without the dash, and \"services\")", file, key)
		}
		values, err := flagValues(raw)
		if err != nil {
			return fmt.Errorf("config %s: key %q: %v", file, key, err)
		}
		pc.entries = append(pc.entries, configEntry{file: file, key: key, values: values})
	}
	return nil
}

// flagValues turns a JSON value into flag values: a string, number or
// boolean is one; an array of them is one each (repeatable flags).
func flagValues(raw json.RawMessage) ([]string, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	one := func(v any) (string, error) {
		switch v := v.(type) {
		case string:
			return v, nil
		case json.Number:
			return v.String(), nil
		case bool:
			return fmt.Sprint(v), nil
		}
		return "", fmt.Errorf("want a string, number, boolean or an array of them")
	}
	if arr, ok := v.([]any); ok {
		out := make([]string, 0, len(arr))
		for _, e := range arr {
			s, err := one(e)
			if err != nil {
				return nil, err
			}
			out = append(out, s)
		}
		return out, nil
	}
	s, err := one(v)
	return []string{s}, err
}

func readServices(file string, raw json.RawMessage, pc *parsedConfig) error {
	var defs []json.RawMessage
	if err := json.Unmarshal(raw, &defs); err != nil {
		return fmt.Errorf("config %s: \"services\": want an array of objects: %v", file, err)
	}
	for i, d := range defs {
		if len(pc.services) >= maxConfigServices {
			return fmt.Errorf("config %s: more than %d services", file, maxConfigServices)
		}
		var def serviceDef
		dec := json.NewDecoder(bytes.NewReader(d))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&def); err != nil {
			return fmt.Errorf("config %s: services[%d]: %v", file, i, strings.Replace(err.Error(), "json: unknown field", "unknown key", 1))
		}
		in, err := def.instance()
		if err != nil {
			return fmt.Errorf("config %s: services[%d] (%s/%s): %v", file, i, def.Service, def.ID, strings.TrimPrefix(err.Error(), "registry: "))
		}
		pc.services = append(pc.services, in)
	}
	return nil
}

// instance validates a service definition as a registration would.
func (d serviceDef) instance() (*registry.Instance, error) {
	in := &registry.Instance{Service: d.Service, ID: d.ID, Port: d.Port, Tags: d.Tags, Meta: d.Meta, Weight: registry.DefaultWeight}
	addr, err := netip.ParseAddr(d.Address)
	if err != nil {
		return nil, fmt.Errorf("address %q is not an IPv4 or IPv6 address", d.Address)
	}
	in.Address = addr
	if d.Weight != nil {
		in.Weight = *d.Weight
	}
	if d.Status != "" {
		if in.Status, err = registry.ParseStatus(d.Status); err != nil {
			return nil, err
		}
	}
	switch {
	case d.Check == "":
	case strings.HasPrefix(d.Check, "ttl="):
		ttl, err := time.ParseDuration(strings.TrimPrefix(d.Check, "ttl="))
		if err != nil {
			return nil, fmt.Errorf("check %q: %v", d.Check, err)
		}
		in.Check = registry.Check{Kind: registry.CheckTTL, TTL: ttl}
	default:
		c, ok, err := checks.ParseSpec(d.Check)
		if !ok {
			return nil, fmt.Errorf("check %q: want ttl=DURATION, tcp=HOST:PORT, http=URL or grpc=HOST:PORT[/SERVICE] (a session needs a client)", d.Check)
		}
		if err != nil {
			return nil, err
		}
		in.Check = c
	}
	if err := in.Normalize(); err != nil {
		return nil, err
	}
	return in, nil
}

// agentConfig is a loaded configuration and what is needed to reload it.
type agentConfig struct {
	files   []string
	cmdline map[string]bool // flags given on the command line
	current parsedConfig
}

// loadAgentConfig reads -config-file and -config-dir into af's flags
// (those not on the command line) and services. It returns nil when there
// is no config file.
func loadAgentConfig(af *agentFlags) (*agentConfig, error) {
	files, err := configFiles(*af.configFile, *af.configDir)
	if err != nil || len(files) == 0 {
		return nil, err
	}
	pc, err := readConfig(files, af.fs)
	if err != nil {
		return nil, err
	}
	conf := &agentConfig{files: files, cmdline: map[string]bool{}, current: pc}
	af.fs.Visit(func(f *flag.Flag) { conf.cmdline[f.Name] = true })
	if err := conf.apply(af.fs, pc); err != nil {
		return nil, err
	}
	af.cfg.Services = pc.services
	return conf, nil
}

// apply sets each flag a file names and the command line does not.
func (c *agentConfig) apply(fs *flag.FlagSet, pc parsedConfig) error {
	done := map[string]bool{}
	for i := len(pc.entries) - 1; i >= 0; i-- { // the last file's value of a key wins
		e := pc.entries[i]
		if c.cmdline[e.key] || done[e.key] {
			continue
		}
		done[e.key] = true
		for _, v := range e.values {
			if err := fs.Set(e.key, v); err != nil {
				return fmt.Errorf("config %s: key %q: %v", e.file, e.key, err)
			}
		}
	}
	return nil
}

// watchSIGHUP rereads the files on SIGHUP: the log level and the services
// change at once (services through updates, to the agent); other changed
// keys are logged as needing a restart. A file that no longer reads keeps
// everything as it was, and the log says why.
func (c *agentConfig) watchSIGHUP(log *slog.Logger, level *slog.LevelVar, updates chan []*registry.Instance) (stop func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for {
			select {
			case <-done:
				return
			case <-hup:
				c.reload(log, level, updates)
			}
		}
	}()
	return func() {
		signal.Stop(hup)
		close(done)
		<-finished
	}
}

func (c *agentConfig) reload(log *slog.Logger, level *slog.LevelVar, updates chan []*registry.Instance) {
	pc, err := readConfig(c.files, newAgentFlags(io.Discard).fs)
	if err != nil {
		log.Error("config reload failed; the previous configuration stays in force", "err", err)
		return
	}
	if !c.cmdline["log-level"] {
		if v, ok := pc.value("log-level"); ok && len(v) == 1 {
			var l slog.Level
			if err := l.UnmarshalText([]byte(v[0])); err != nil {
				log.Error("config reload: log-level not changed", "value", v[0], "err", err)
			} else if l != level.Level() {
				log.Info("config reload: log level changed", "from", level.Level().String(), "to", l.String())
				level.Set(l)
			}
		}
	}
	for _, key := range changedKeys(c.current, pc) {
		if key != "log-level" && !c.cmdline[key] {
			log.Warn("config reload: this key changed but takes effect only at the next restart", "key", key)
		}
	}
	c.current = pc
	select { // keep only the latest list for the agent
	case <-updates:
	default:
	}
	updates <- pc.services
	log.Info("config reloaded", "files", len(c.files), "services", len(pc.services))
}

// changedKeys lists the flag keys whose values differ between a and b.
func changedKeys(a, b parsedConfig) []string {
	keys := map[string]bool{}
	for _, e := range append(slices.Clone(a.entries), b.entries...) {
		keys[e.key] = true
	}
	var out []string
	for k := range keys {
		va, _ := a.value(k)
		vb, _ := b.value(k)
		if !slices.Equal(va, vb) {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// runValidate: herald validate FILE|DIR...
func runValidate(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("herald validate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: herald validate FILE|DIR...\n\nChecks agent config files (a directory: its *.json files) as `herald agent -config-file` would, without starting anything.")
	}
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return usagef("want at least one config file or directory: herald validate /etc/herald/herald.json")
	}
	var files []string
	for _, a := range fs.Args() {
		if st, err := os.Stat(a); err == nil && st.IsDir() {
			more, err := configFiles("", a)
			if err != nil {
				return err
			}
			files = append(files, more...)
		} else {
			files = append(files, a)
		}
	}
	af := newAgentFlags(io.Discard)
	pc, err := readConfig(files, af.fs)
	if err != nil {
		return err
	}
	conf := &agentConfig{files: files, cmdline: map[string]bool{}}
	if err := conf.apply(af.fs, pc); err != nil {
		return err
	}
	if _, err := af.finish(); err != nil {
		return err
	}
	if err := af.cfg.Check(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "valid: %d file(s), %d setting(s), %d service(s)\n", len(files), len(pc.entries), len(pc.services))
	return nil
}
