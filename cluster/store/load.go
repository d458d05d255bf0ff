package store

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/netip"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/herald-sd/herald/cluster/registry"
)

// Load returns every stored instance and tombstone, and the saved clock. A
// record that does not decode or validate is moved into the quarantine
// bucket and logged: one bad record never fails the load.
func (s *Store) Load() (registry.Stored, error) {
	var out registry.Stored
	var bad []quarantined
	skip := func(b []byte, k, v []byte, err error) {
		bad = append(bad, quarantined{Bucket: string(b), Key: bytes.Clone(k), Value: bytes.Clone(v), Reason: err.Error()})
	}
	err := s.view(func(tx *bolt.Tx) error {
		switch v := tx.Bucket(metaBucket).Get(clockKey); {
		case len(v) == 8:
			out.Clock = registry.Stamp(binary.BigEndian.Uint64(v))
		case v != nil:
			s.log.Warn("store: the saved clock is malformed; the stored stamps and the time set the clock", "file", s.path, "value", fmt.Sprintf("%x", v))
		}
		if err := tx.Bucket(tombBucket).ForEach(func(k, v []byte) error {
			if t, err := decodeTombstone(k, v); err != nil {
				skip(tombBucket, k, v, err)
			} else {
				out.Tombstones = append(out.Tombstones, t)
			}
			return nil
		}); err != nil {
			return err
		}
		return tx.Bucket(bucket).ForEach(func(k, v []byte) error {
			if in, err := decodeInstance(k, v); err != nil {
				skip(bucket, k, v, err)
			} else {
				out.Instances = append(out.Instances, in)
			}
			return nil
		})
	})
	if err != nil {
		return registry.Stored{}, fmt.Errorf("store: load %s: %w", s.path, err)
	}
	if len(bad) > 0 {
		s.quarantine(bad)
	}
	return out, nil
}

func decodeInstance(k, v []byte) (*registry.Instance, error) {
	var r record
	if err := json.Unmarshal(v, &r); err != nil {
		return nil, fmt.Errorf("not a stored instance: %w", err)
	}
	addr, err := netip.ParseAddr(r.Address)
	if err != nil {
		return nil, fmt.Errorf("address: %w", err)
	}
	st, err := registry.ParseStatus(r.Status)
	if err != nil {
		return nil, err
	}
	in := &registry.Instance{
		Service: r.Service, ID: r.ID, Address: addr, Port: r.Port,
		Tags: r.Tags, Meta: r.Meta, Weight: r.Weight, Status: st, Stamp: registry.Stamp(r.Stamp),
	}
	if err := in.Normalize(); err != nil {
		return nil, err
	}
	if !bytes.Equal(key(in.Key()), k) {
		return nil, fmt.Errorf("the record is %s, stored under another key", in.Key())
	}
	return in, nil
}

func decodeTombstone(k, v []byte) (registry.Tombstone, error) {
	svc, id, ok := splitKey(k)
	if !ok {
		return registry.Tombstone{}, fmt.Errorf("key is not service/id")
	}
	// The key must be one a registration could have: check it with the
	// instance rules, on an instance that has nothing else.
	probe := registry.Instance{Service: svc, ID: id, Address: netip.IPv6Loopback(), Port: 1}
	if err := probe.Normalize(); err != nil {
		return registry.Tombstone{}, err
	}
	if probe.Service != svc {
		return registry.Tombstone{}, fmt.Errorf("service %q is not in canonical (lower) case", svc)
	}
	if len(v) != 8 {
		return registry.Tombstone{}, fmt.Errorf("stamp is %d bytes, want 8", len(v))
	}
	return registry.Tombstone{Key: probe.Key(), Stamp: registry.Stamp(binary.BigEndian.Uint64(v))}, nil
}

// quarantined is a record that did not load, as kept in the quarantine
// bucket for an operator to inspect.
type quarantined struct {
	Bucket string    `json:"bucket"`
	Key    []byte    `json:"key"`
	Value  []byte    `json:"value"`
	Reason string    `json:"reason"`
	Time   time.Time `json:"time"`
}

// quarantine logs the bad records and moves them into the quarantine
// bucket. If the move fails they stay where they are, are skipped again at
// the next load, and the failure is logged.
func (s *Store) quarantine(bad []quarantined) {
	now := time.Now().UTC()
	for i := range bad {
		bad[i].Time = now
		s.log.Warn("store: quarantined a stored record that does not load",
			"file", s.path, "bucket", bad[i].Bucket, "key", fmt.Sprintf("%q", bad[i].Key), "reason", bad[i].Reason)
	}
	err := s.update(func(tx *bolt.Tx) error {
		q := tx.Bucket(quarBucket)
		for _, r := range bad {
			seq, err := q.NextSequence()
			if err != nil {
				return err
			}
			v, err := json.Marshal(r)
			if err != nil {
				return err
			}
			if err := q.Put(binary.BigEndian.AppendUint64(nil, seq), v); err != nil {
				return err
			}
			if err := tx.Bucket([]byte(r.Bucket)).Delete(r.Key); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		s.log.Error("store: could not move the quarantined records; they are skipped again at the next start", "file", s.path, "err", err)
	}
}
