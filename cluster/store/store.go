// Package store persists the plain registrations a node owns, so that they
// survive a restart, including kill -9. It is an embedded bbolt database:
// every commit is one fsynced transaction, never a half-written file.
//
// A damaged file never crashes the process: Open checks the file before
// bbolt reads it and refuses a damaged one with an error wrapping
// ErrDamaged, and Options.Recover moves it aside and keeps what can be read.
// A single record that does not load is quarantined, not fatal.
//
// It implements registry.Store and must never import Serf, gRPC or DNS code.
package store

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/herald-sd/herald/cluster/registry"
)

// FileName is the database file inside the data dir.
const FileName = "registrations.db"

var (
	bucket      = []byte("instances")
	tombBucket  = []byte("tombstones")
	metaBucket  = []byte("meta")
	quarBucket  = []byte("quarantine")
	allBuckets  = [][]byte{bucket, tombBucket, metaBucket, quarBucket}
	epochKey    = []byte("epoch")
	clockKey    = []byte("clock")
	lockTimeout = time.Second
)

// Options configures Open. The zero value is the default of every field.
type Options struct {
	// Recover handles a damaged file: it moves the file aside (to
	// registrations.db.damaged-<UTC time>), writes what can be read of it
	// into a fresh file, logs what was kept and what was lost, and opens
	// the fresh file. Default false: Open returns an error wrapping
	// ErrDamaged that names the file.
	Recover bool
	// Logger gets quarantined records, recoveries and warnings. Default
	// slog.Default().
	Logger *slog.Logger
}

// Store is a bbolt-backed registry.Store. It is safe for concurrent use.
type Store struct {
	db   *bolt.DB
	dir  string
	path string
	log  *slog.Logger
	lock *os.File
	// markerEpoch is the marker file's epoch when the store was opened;
	// it is ahead of the database's after a crash inside SaveEpoch.
	markerEpoch uint64
}

// Open opens (or creates) the store in dir. It fails after a second if
// another process holds the data dir, and with an error wrapping
// ErrDamaged if the file is damaged and opts.Recover is not set.
func Open(dir string, opts Options) (*Store, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("store: create data dir: %w", err)
	}
	lock, err := lockDir(dir, lockTimeout)
	if err != nil {
		return nil, err
	}
	s := &Store{dir: dir, path: filepath.Join(dir, FileName), log: opts.Logger, lock: lock}
	if err := s.open(opts.Recover); err != nil {
		lock.Close()
		return nil, err
	}
	return s, nil
}

func (s *Store) open(recoverDamage bool) error {
	mk, err := readMarker(s.dir)
	if err != nil {
		return err
	}
	db, reason, err := openChecked(s.path, mk)
	if err != nil {
		return err
	}
	switch {
	case reason != "" && !recoverDamage:
		return &DamageError{Path: s.path, Reason: reason}
	case reason != "":
		if db, err = s.recoverFile(reason, mk); err != nil {
			return err
		}
	case recoverDamage:
		s.log.Info("store: -recover-store: the store file is sound, nothing to recover", "file", s.path)
	}
	if mk.err != nil {
		s.log.Warn("store: the epoch marker is unreadable; the next epoch replaces it", "file", filepath.Join(s.dir, MarkerName), "err", mk.err)
	}
	s.db, s.markerEpoch = db, mk.epoch
	if err := s.createBuckets(); err != nil {
		db.Close()
		return fmt.Errorf("store: init %s: %w", s.path, err)
	}
	return nil
}

// createBuckets creates the buckets a new file lacks. A file that has them
// is not written to, so that opening a store writes nothing.
func (s *Store) createBuckets() error {
	missing := false
	if err := s.view(func(tx *bolt.Tx) error {
		for _, name := range allBuckets {
			missing = missing || tx.Bucket(name) == nil
		}
		return nil
	}); err != nil || !missing {
		return err
	}
	return s.update(func(tx *bolt.Tx) error {
		for _, name := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		return nil
	})
}

// openChecked opens the file at path after checking it. A missing or empty
// file is a new store, unless the marker says this node stored state
// before. It returns why the file is damaged, or the open database.
func openChecked(path string, mk marker) (*bolt.DB, string, error) {
	fi, err := os.Stat(path)
	isNew := errors.Is(err, fs.ErrNotExist) || err == nil && fi.Size() == 0
	switch {
	case err != nil && !isNew:
		return nil, "", fmt.Errorf("store: %w", err)
	case isNew && mk.exists:
		what := "missing"
		if err == nil {
			what = "empty (0 bytes)"
		}
		return nil, fmt.Sprintf("%s, but %s shows that this node stored registrations before", what, MarkerName), nil
	case !isNew:
		if reason, err := inspect(path); err != nil || reason != "" {
			return nil, reason, err
		}
	}
	db, reason, err := openBolt(path)
	if err == nil && reason == "" && isNew {
		// bbolt fsynced the new file's pages, but not its directory entry.
		if err = syncDir(filepath.Dir(path)); err != nil {
			db.Close()
			return nil, "", fmt.Errorf("store: create %s: %w", path, err)
		}
	}
	return db, reason, err
}

// Close closes the database and releases the data dir.
func (s *Store) Close() error {
	err := s.db.Close()
	s.lock.Close()
	return err
}

// view and update run a bbolt transaction. A panic or memory fault inside
// bbolt (a file damaged while open) becomes an error wrapping ErrDamaged,
// never a crash.
func (s *Store) view(fn func(*bolt.Tx) error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = &DamageError{Path: s.path, Reason: fmt.Sprintf("reading it failed: %v", r)}
		}
	}()
	return s.db.View(fn)
}

func (s *Store) update(fn func(*bolt.Tx) error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = &DamageError{Path: s.path, Reason: fmt.Sprintf("writing it failed: %v", r)}
		}
	}()
	return s.db.Update(fn)
}

// record is the stored form of an instance: stable JSON, independent of the
// in-memory layout.
type record struct {
	Service string            `json:"service"`
	ID      string            `json:"id"`
	Address string            `json:"address"`
	Port    uint16            `json:"port"`
	Tags    []string          `json:"tags,omitempty"`
	Meta    map[string]string `json:"meta,omitempty"`
	Weight  uint32            `json:"weight"`
	Status  string            `json:"status"`
	Stamp   uint64            `json:"stamp"`
}

func key(k registry.Key) []byte { return []byte(k.Service + "/" + k.ID) }

func splitKey(k []byte) (service, id string, ok bool) {
	for i, c := range k {
		if c == '/' {
			return string(k[:i]), string(k[i+1:]), i > 0 && i < len(k)-1
		}
	}
	return "", "", false
}

// Commit writes the batch in one transaction, fsynced before it returns
// (bbolt's NoSync stays off). A failed commit changes nothing: bbolt writes
// the new pages into free space and the meta page last, and rolls back.
func (s *Store) Commit(b registry.Batch) error {
	return s.update(func(tx *bolt.Tx) error {
		ib, tb := tx.Bucket(bucket), tx.Bucket(tombBucket)
		for _, in := range b.Puts {
			v, err := json.Marshal(record{
				Service: in.Service, ID: in.ID, Address: in.Address.String(), Port: in.Port,
				Tags: in.Tags, Meta: in.Meta, Weight: in.Weight, Status: in.Status.String(), Stamp: uint64(in.Stamp),
			})
			if err != nil {
				return fmt.Errorf("store: encode %s: %w", in.Key(), err)
			}
			if err := ib.Put(key(in.Key()), v); err != nil {
				return fmt.Errorf("store: put %s: %w", in.Key(), err)
			}
			if err := tb.Delete(key(in.Key())); err != nil {
				return fmt.Errorf("store: delete tombstone %s: %w", in.Key(), err)
			}
		}
		for _, t := range b.Tombstones {
			if err := tb.Put(key(t.Key), binary.BigEndian.AppendUint64(nil, uint64(t.Stamp))); err != nil {
				return fmt.Errorf("store: put tombstone %s: %w", t.Key, err)
			}
			if err := ib.Delete(key(t.Key)); err != nil {
				return fmt.Errorf("store: delete %s: %w", t.Key, err)
			}
		}
		for _, k := range b.Deletes {
			if err := ib.Delete(key(k)); err != nil {
				return fmt.Errorf("store: delete %s: %w", k, err)
			}
			if err := tb.Delete(key(k)); err != nil {
				return fmt.Errorf("store: delete tombstone %s: %w", k, err)
			}
		}
		if b.Clock != 0 {
			if err := tx.Bucket(metaBucket).Put(clockKey, binary.BigEndian.AppendUint64(nil, uint64(b.Clock))); err != nil {
				return fmt.Errorf("store: save clock: %w", err)
			}
		}
		return nil
	})
}

// LastEpoch returns the highest epoch saved by earlier runs, in the
// database or in the marker file, or 0.
func (s *Store) LastEpoch() (uint64, error) {
	e := s.markerEpoch
	err := s.view(func(tx *bolt.Tx) error {
		v := tx.Bucket(metaBucket).Get(epochKey)
		switch {
		case len(v) == 8:
			e = max(e, binary.BigEndian.Uint64(v))
		case v != nil:
			s.log.Warn("store: the saved epoch is malformed; using the marker file's", "file", s.path, "value", fmt.Sprintf("%x", v))
		}
		return nil
	})
	return e, err
}

// SaveEpoch records this run's epoch: first in the marker file, then in the
// database, so that the marker is never behind an epoch the database holds.
func (s *Store) SaveEpoch(e uint64) error {
	if err := writeMarker(s.dir, e); err != nil {
		return err
	}
	return s.update(func(tx *bolt.Tx) error {
		return tx.Bucket(metaBucket).Put(epochKey, binary.BigEndian.AppendUint64(nil, e))
	})
}
