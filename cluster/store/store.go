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
	metaBucket = []byte("meta")
	epochKey   = []byte("epoch")
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
}

func key(k registry.Key) []byte { return []byte(k.Service + "/" + k.ID) }

// Load returns every stored instance.
func (s *Store) Load() ([]*registry.Instance, error) {
	var out []*registry.Instance
	err := s.db.View(func(tx *bolt.Tx) error {
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
			out = append(out, &registry.Instance{
				Service: r.Service, ID: r.ID, Address: addr, Port: r.Port,
				Tags: r.Tags, Meta: r.Meta, Weight: r.Weight, Status: st,
			})
			return nil
		})
	})
	return out, err
}

// Commit writes puts and deletes in one transaction.
func (s *Store) Commit(puts []*registry.Instance, deletes []registry.Key) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucket)
		for _, in := range puts {
			v, err := json.Marshal(record{
				Service: in.Service, ID: in.ID, Address: in.Address.String(), Port: in.Port,
				Tags: in.Tags, Meta: in.Meta, Weight: in.Weight, Status: in.Status.String(),
			})
			if err != nil {
				return fmt.Errorf("store: encode %s: %w", in.Key(), err)
			}
			if err := b.Put(key(in.Key()), v); err != nil {
				return fmt.Errorf("store: put %s: %w", in.Key(), err)
			}
		}
		for _, k := range deletes {
			if err := b.Delete(key(k)); err != nil {
				return fmt.Errorf("store: delete %s: %w", k, err)
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
