package store

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/herald-sd/herald/cluster/registry"
)

// The fixture: a store with fixtureN instances in two services, a few
// tombstones, an epoch and a clock, built once and copied into each test's
// data dir.
const (
	fixtureN     = 300
	fixtureTombs = 5
	fixtureEpoch = uint64(4_000_000_000_000_000_000) // 2096: the node's clock once ran far ahead
	fixtureClock = registry.Stamp(1 << 50)
)

var fixture struct {
	once   sync.Once
	db     []byte
	marker []byte
	want   map[string]*registry.Instance // by key
	err    error
}

func fixtureInstance(i int) *registry.Instance {
	return &registry.Instance{
		Service: []string{"api", "web"}[i%2], ID: fmt.Sprintf("i-%03d", i),
		Address: netip.AddrFrom4([4]byte{10, 0, byte(i / 256), byte(i)}), Port: uint16(9000 + i),
		Tags: []string{"v1", "zone-a"}, Meta: map[string]string{"owner": "team-storage", "build": fmt.Sprintf("2026.11.%03d", i)},
		Weight: uint32(1 + i%7), Status: registry.StatusPassing, Stamp: registry.Stamp(1<<49 + i),
	}
}

func buildFixture() error {
	dir, err := os.MkdirTemp("", "herald-store-fixture-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	st, err := Open(dir, Options{})
	if err != nil {
		return err
	}
	fixture.want = map[string]*registry.Instance{}
	// Commits of 30 like a busy node's group commits, so that the file
	// has a history: a freelist, freed pages, a multi-level tree.
	for i := 0; i < fixtureN; i += 30 {
		var b registry.Batch
		for j := i; j < i+30; j++ {
			in := fixtureInstance(j)
			b.Puts = append(b.Puts, in)
			fixture.want[in.Key().String()] = in
		}
		if err := st.Commit(b); err != nil {
			return err
		}
	}
	var b registry.Batch
	for i := range fixtureTombs {
		b.Tombstones = append(b.Tombstones, registry.Tombstone{Key: registry.Key{Service: "gone", ID: fmt.Sprintf("g-%d", i)}, Stamp: registry.Stamp(1<<49 + i)})
	}
	b.Clock = fixtureClock
	if err := st.Commit(b); err != nil {
		return err
	}
	if err := st.SaveEpoch(fixtureEpoch); err != nil {
		return err
	}
	if err := st.Close(); err != nil {
		return err
	}
	if fixture.db, err = os.ReadFile(filepath.Join(dir, FileName)); err != nil {
		return err
	}
	fixture.marker, err = os.ReadFile(filepath.Join(dir, MarkerName))
	return err
}

// fixtureDir returns a new data dir holding a copy of the fixture, and the
// path of its database file.
func fixtureDir(t testing.TB) (dir, path string) {
	t.Helper()
	fixture.once.Do(func() { fixture.err = buildFixture() })
	if fixture.err != nil {
		t.Fatal(fixture.err)
	}
	dir = t.TempDir()
	path = filepath.Join(dir, FileName)
	if err := os.WriteFile(path, fixture.db, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, MarkerName), fixture.marker, 0o600); err != nil {
		t.Fatal(err)
	}
	return dir, path
}

// fixturePages returns the in-use pages of the fixture by bbolt's type:
// "branch", "leaf", "freelist", "meta" (free pages are left out), and the
// page size.
func fixturePages(t testing.TB) (map[string][]int, int) {
	t.Helper()
	_, path := fixtureDir(t)
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, PreLoadFreelist: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	pages := map[string][]int{}
	err = db.View(func(tx *bolt.Tx) error {
		for id := 0; ; id++ {
			p, err := tx.Page(id)
			if err != nil || p == nil {
				return err
			}
			pages[p.Type] = append(pages[p.Type], id)
			id += p.OverflowCount
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return pages, db.Info().PageSize
}

// logBuffer is a slog logger that writes into a buffer tests can read.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *logBuffer) logger() *slog.Logger { return slog.New(slog.NewTextHandler(l, nil)) }

// readQuarantine returns the records that Load or a recovery set aside.
func readQuarantine(t testing.TB, s *Store) []quarantined {
	t.Helper()
	var out []quarantined
	err := s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(quarBucket).ForEach(func(_, v []byte) error {
			var r quarantined
			if err := json.Unmarshal(v, &r); err != nil {
				return err
			}
			out = append(out, r)
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
