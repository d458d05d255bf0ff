// Package store persists the plain registrations a node owns, so that they
// survive a restart, including kill -9. It is an embedded bbolt database:
// every commit is one fsynced transaction, never a half-written file.
//
// It implements registry.Store and must never import Serf, gRPC or DNS code.
package store

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/herald-sd/herald/cluster/registry"
)

// FileName is the database file inside the data dir.
const FileName = "registrations.db"

var (
	bucket     = []byte("instances")
	tombBucket = []byte("tombstones")
	metaBucket = []byte("meta")
	epochKey   = []byte("epoch")
	clockKey   = []byte("clock")
)

// Store is a bbolt-backed registry.Store. It is safe for concurrent use.
type Store struct {
	db *bolt.DB
}

// Open opens (or creates) the store in dir. It fails after a second if
// another process holds the database.
func Open(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("store: create data dir: %w", err)
	}
	path := filepath.Join(dir, FileName)
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return nil, fmt.Errorf("store: open %s (is another agent using this -data-dir?): %w", path, err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		if _, err := tx.CreateBucketIfNotExists(bucket); err != nil {
			return err
		}
		if _, err := tx.CreateBucketIfNotExists(tombBucket); err != nil {
			return err
		}
		_, err := tx.CreateBucketIfNotExists(metaBucket)
		return err
	}); err != nil {
		db.Close()
		return nil, fmt.Errorf("store: init %s: %w", path, err)
	}
	return &Store{db: db}, nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

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

// Load returns every stored instance and tombstone, and the saved clock.
func (s *Store) Load() (registry.Stored, error) {
	var out registry.Stored
	err := s.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(metaBucket).Get(clockKey); len(v) == 8 {
			out.Clock = registry.Stamp(binary.BigEndian.Uint64(v))
		}
		if err := tx.Bucket(tombBucket).ForEach(func(k, v []byte) error {
			svc, id, ok := splitKey(k)
			if !ok || len(v) != 8 {
				return fmt.Errorf("store: tombstone %q is malformed", k)
			}
			out.Tombstones = append(out.Tombstones, registry.Tombstone{Key: registry.Key{Service: svc, ID: id}, Stamp: registry.Stamp(binary.BigEndian.Uint64(v))})
			return nil
		}); err != nil {
			return err
		}
		return tx.Bucket(bucket).ForEach(func(k, v []byte) error {
			var r record
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("store: record %q: %w", k, err)
			}
			addr, err := netip.ParseAddr(r.Address)
			if err != nil {
				return fmt.Errorf("store: record %q: %w", k, err)
			}
			st, err := registry.ParseStatus(r.Status)
			if err != nil {
				return fmt.Errorf("store: record %q: %w", k, err)
			}
			out.Instances = append(out.Instances, &registry.Instance{
				Service: r.Service, ID: r.ID, Address: addr, Port: r.Port,
				Tags: r.Tags, Meta: r.Meta, Weight: r.Weight, Status: st, Stamp: registry.Stamp(r.Stamp),
			})
			return nil
		})
	})
	return out, err
}

func splitKey(k []byte) (service, id string, ok bool) {
	for i, c := range k {
		if c == '/' {
			return string(k[:i]), string(k[i+1:]), i > 0 && i < len(k)-1
		}
	}
	return "", "", false
}

// Commit writes the batch in one transaction.
func (s *Store) Commit(b registry.Batch) error {
	return s.db.Update(func(tx *bolt.Tx) error {
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

// LastEpoch returns the epoch saved by the last run, or 0.
func (s *Store) LastEpoch() (uint64, error) {
	var e uint64
	err := s.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(metaBucket).Get(epochKey); len(v) == 8 {
			e = binary.BigEndian.Uint64(v)
		}
		return nil
	})
	return e, err
}

// SaveEpoch records this run's epoch.
func (s *Store) SaveEpoch(e uint64) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(metaBucket).Put(epochKey, binary.BigEndian.AppendUint64(nil, e))
	})
}
