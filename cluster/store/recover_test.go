package store

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herald-sd/herald/cluster/registry"
)

// Without the marker, a missing or empty file is a new node's.
func TestNewNodeStartsEmpty(t *testing.T) {
	for name, prepare := range map[string]func(path string) error{
		"missing": func(string) error { return nil },
		"empty":   func(path string) error { return os.WriteFile(path, nil, 0o600) },
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			if err := prepare(filepath.Join(dir, FileName)); err != nil {
				t.Fatal(err)
			}
			st, err := Open(dir, Options{})
			if err != nil {
				t.Fatal(err)
			}
			if got, err := st.Load(); err != nil || len(got.Instances)+len(got.Tombstones) != 0 {
				t.Fatalf("Load = %+v, %v; want nothing", got, err)
			}
			if err := st.Commit(registry.Batch{Puts: []*registry.Instance{fixtureInstance(1)}}); err != nil {
				t.Fatal(err)
			}
			if err := st.SaveEpoch(7); err != nil {
				t.Fatal(err)
			}
			st.Close()
			st, err = Open(dir, Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			if got, _ := st.Load(); len(got.Instances) != 1 {
				t.Fatalf("reloaded %d instances, want 1", len(got.Instances))
			}
		})
	}
}

// Recovery keeps the epoch above the damaged file's even without the
// marker, when the file's own epoch can still be read.
func TestRecoveryReadsTheEpochFromTheDamagedFile(t *testing.T) {
	pages, ps := fixturePages(t)
	dir, path := fixtureDir(t)
	os.Remove(filepath.Join(dir, MarkerName))
	b, _ := os.ReadFile(path)
	id := pages["leaf"][0]
	clear(b[id*ps : (id+1)*ps])
	os.WriteFile(path, b, 0o600)

	st, err := Open(dir, Options{Recover: true, Logger: new(logBuffer).logger()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if e, _ := st.LastEpoch(); e < fixtureEpoch {
		t.Fatalf("LastEpoch after recovery %d, want at least the damaged file's %d", e, fixtureEpoch)
	}
}

// A page only the last commit wrote is damaged: its key range comes back
// from the previous commit's tree, one commit old.
func TestRecoveryRefillsFromThePreviousCommit(t *testing.T) {
	dir, path := fixtureDir(t)
	st, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	changed := fixtureInstance(100)
	changed.Weight = 99
	if err := st.Commit(registry.Batch{Puts: []*registry.Instance{changed}}); err != nil {
		t.Fatal(err)
	}
	st.Close()

	// Find the leaf page that holds the changed instance in the newest
	// tree and in no other: the last commit wrote it.
	b, _ := os.ReadFile(path)
	ps, metas := readMetas(bytes.NewReader(b), int64(len(b)))
	ms := current(metas)
	var seen [2]map[uint64]bool
	for i, m := range ms {
		r := newPager(bytes.NewReader(b), ps, m.pgid)
		var vis visitor
		vis = visitor{
			leaf: func(flags uint32, _, v []byte) error {
				if flags&bucketLeafFlag != 0 {
					return r.bucket(v, 0, vis)
				}
				return nil
			},
			bad: func(_, _ []byte, err error) error { return err },
		}
		if err := r.tree(m.root, nil, nil, 0, vis); err != nil {
			t.Fatal(err)
		}
		seen[i] = r.seen
	}
	target := -1
	for id := range seen[0] {
		p, _ := parsePage(b[int(id)*ps : int(id+1)*ps])
		if !seen[1][id] && id != ms[0].root && p.flags == leafPageFlag && bytes.Contains(p.buf, key(changed.Key())) {
			target = int(id)
		}
	}
	if target < 0 {
		t.Fatal("the last commit wrote no leaf page of its own")
	}
	clear(b[target*ps : (target+1)*ps])
	os.WriteFile(path, b, 0o600)

	var log logBuffer
	st, err = Open(dir, Options{Recover: true, Logger: log.logger()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	checkInstances(t, st, fixtureN) // every one, as the previous commit had it
	if !strings.Contains(log.String(), "refilled_from_previous_commit=") || strings.Contains(log.String(), "refilled_from_previous_commit=0 ") {
		t.Errorf("the log does not show the refill: %s", log.String())
	}
}
