package store

import (
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/herald-sd/herald/cluster/registry"
)

// damage is a way to break a copy of the fixture.
type damage struct {
	name  string
	apply func(t *testing.T, dir, path string)
	// reason is a part of the error's reason; "" means the file opens.
	reason string
	// keep is how many of the fixture's instances recovery must keep at least.
	keep int
}

func damages(t *testing.T) []damage {
	pages, ps := fixturePages(t)
	used := 0 // pages below the high water mark
	for _, ids := range pages {
		for _, id := range ids {
			used = max(used, id+1)
		}
	}
	truncate := func(size int) func(*testing.T, string, string) {
		return func(t *testing.T, _, path string) {
			if err := os.Truncate(path, int64(size)); err != nil {
				t.Fatal(err)
			}
		}
	}
	patch := func(off int, fn func(b []byte)) func(*testing.T, string, string) {
		return func(t *testing.T, _, path string) {
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			fn(b[off:])
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	flipMeta := func(id int) func(b []byte) {
		return func(b []byte) { b[id*ps+pageHeaderSize+40] ^= 0x55 } // the high water mark
	}
	ds := []damage{
		{name: "intact", apply: func(*testing.T, string, string) {}, keep: fixtureN},
		{name: "cut to 0 bytes", apply: truncate(0), reason: "empty (0 bytes), but node-state.json"},
		{name: "cut to 1 page", apply: truncate(ps), reason: "shorter than"},
		{name: "cut to half the used pages", apply: truncate(used / 2 * ps), reason: "cut off: meta page"},
		{name: "cut by 1 byte", apply: truncate(len(fixture.db) - 1), reason: "not a whole number", keep: fixtureN - 40},
		{name: "zeroed tail", apply: patch(used*3/4*ps, func(b []byte) { clear(b) }), reason: "page"},
		{name: "both meta pages corrupted", apply: patch(0, func(b []byte) { flipMeta(0)(b); flipMeta(1)(b) }), reason: "meta page checksums do not match"},
		{name: "meta page 0 corrupted", apply: patch(0, flipMeta(0)), keep: fixtureN},
		{name: "meta page 1 corrupted", apply: patch(0, flipMeta(1)), keep: fixtureN},
		{name: "missing with the marker", apply: func(t *testing.T, _, path string) { os.Remove(path) }, reason: "missing, but node-state.json"},
	}
	// A random in-use page overwritten with random bytes, for a few seeds.
	inUse := append(append([]int{}, pages["leaf"]...), pages["branch"]...)
	for seed := range uint64(4) {
		rng := rand.New(rand.NewPCG(seed, 13))
		id := inUse[rng.IntN(len(inUse))]
		ds = append(ds, damage{
			name: "random bytes over page " + strconv.Itoa(id),
			apply: patch(id*ps, func(b []byte) {
				for i := range ps {
					b[i] = byte(rng.Uint32())
				}
			}),
			reason: "page",
			keep:   fixtureN - 40, // a page and a half of records at most
		})
	}
	return ds
}

func TestDamagedFileIsRefusedThenRecovered(t *testing.T) {
	for _, d := range damages(t) {
		t.Run(d.name, func(t *testing.T) {
			dir, path := fixtureDir(t)
			d.apply(t, dir, path)
			before, _ := os.ReadFile(path)

			st, err := Open(dir, Options{})
			if d.reason == "" {
				if err != nil {
					t.Fatalf("Open: %v", err)
				}
				checkInstances(t, st, d.keep)
				st.Close()
				return
			}
			if err == nil {
				st.Close()
				t.Fatal("Open of a damaged file succeeded")
			}
			if !errors.Is(err, ErrDamaged) {
				t.Fatalf("Open: %v, want ErrDamaged", err)
			}
			for _, want := range []string{path, "is damaged", d.reason, "-recover-store"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not mention %q", err, want)
				}
			}

			var log logBuffer
			st, err = Open(dir, Options{Recover: true, Logger: log.logger()})
			if err != nil {
				t.Fatalf("Open with Recover: %v", err)
			}
			defer st.Close()
			n := checkInstances(t, st, d.keep)
			if !strings.Contains(log.String(), "recovered a damaged store file") {
				t.Errorf("recovery was not logged: %s", log.String())
			}
			if n < fixtureN && strings.Contains(log.String(), "lost=nothing") {
				t.Errorf("kept %d of %d instances but logged that nothing was lost: %s", n, fixtureN, log.String())
			}
			if before != nil {
				aside, _ := filepath.Glob(path + ".damaged-*")
				if len(aside) != 1 {
					t.Fatalf("damaged copies %v, want one", aside)
				}
				if kept, _ := os.ReadFile(aside[0]); string(kept) != string(before) {
					t.Error("the damaged file was not kept as it was")
				}
			}
			r, err := registry.New(registry.Config{Node: "n1", Store: st, Epoch: 1})
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			if r.Epoch() <= fixtureEpoch {
				t.Errorf("epoch after recovery %d, want above the damaged file's %d", r.Epoch(), fixtureEpoch)
			}
		})
	}
}

// checkInstances loads the store and checks that it holds at least min of
// the fixture's instances, each exactly as stored, and nothing else.
func checkInstances(t *testing.T, st *Store, min int) int {
	t.Helper()
	got, err := st.Load()
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	for _, in := range got.Instances {
		want := fixture.want[in.Key().String()]
		if want == nil || in.Address != want.Address || in.Port != want.Port || in.Weight != want.Weight ||
			in.Stamp != want.Stamp || in.Meta["build"] != want.Meta["build"] {
			t.Errorf("loaded %+v, stored %+v", in, want)
		}
	}
	if len(got.Instances) < min {
		t.Errorf("loaded %d instances, want at least %d", len(got.Instances), min)
	}
	return len(got.Instances)
}

// Random single-byte flips never make Open, Load or a recovery panic or
// fail in any way but ErrDamaged.
func TestByteFlipsNeverPanic(t *testing.T) {
	pages, ps := fixturePages(t)
	used := 0
	for _, ids := range pages {
		used = max(used, ids[len(ids)-1]+1)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	base := t.TempDir()
	outcomes := map[string]int{}
	for i := range 200 {
		dir := filepath.Join(base, strconv.Itoa(i))
		os.MkdirAll(dir, 0o750)
		b := append([]byte(nil), fixture.db...)
		// Half of the flips anywhere in the used pages, where most bytes
		// are record values; half in a page's header and first elements,
		// where bbolt finds its way.
		off := rng.IntN(used * ps)
		if i%2 == 1 {
			off = rng.IntN(used)*ps + rng.IntN(pageHeaderSize+4*elemSize)
		}
		b[off] ^= byte(1 + rng.IntN(255))
		os.WriteFile(filepath.Join(dir, FileName), b, 0o600)
		os.WriteFile(filepath.Join(dir, MarkerName), fixture.marker, 0o600)

		st, err := Open(dir, Options{Logger: new(logBuffer).logger()})
		switch {
		case err == nil:
			if _, err := st.Load(); err != nil {
				t.Errorf("flip at %d: Load: %v", off, err)
			}
			st.Close()
			outcomes["opened"]++
			continue
		case !errors.Is(err, ErrDamaged):
			t.Fatalf("flip at %d: Open: %v, want ErrDamaged", off, err)
		}
		outcomes["damaged"]++
		st, err = Open(dir, Options{Recover: true, Logger: new(logBuffer).logger()})
		if err != nil {
			t.Fatalf("flip at %d: Open with Recover: %v", off, err)
		}
		if _, err := st.Load(); err != nil {
			t.Errorf("flip at %d: Load after recovery: %v", off, err)
		}
		st.Close()
	}
	t.Logf("200 flips: %v", outcomes)
}
