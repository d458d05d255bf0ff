package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/herald-sd/herald/cluster/registry"
)

// Recovery (Options.Recover): read what can be read of a damaged file with
// the bounds-checked reader, write it into a fresh file, keep the damaged
// one beside it, and make sure the next epoch is above any the damaged file
// could have held.

// salvage is what could be read of a damaged file.
type salvage struct {
	records  map[string]map[string][]byte // bucket -> key -> value, of the store's buckets
	from     string                       // the meta page the records were read through
	lost     []string                     // what could not be read
	refilled int                          // records taken from the previous commit
}

// gap is a key range of a bucket that could not be read; bucket "" is a
// range of the bucket list itself.
type gap struct {
	bucket string
	lo, hi []byte
}

// salvageFile reads what it can of the file at path. It reads through the
// newest valid meta page whose root is readable, and fills the key ranges
// it could not read from the previous commit's tree, which bbolt keeps
// intact until the next commit: there the records are one commit old, and
// a record that the last commit deleted in such a range comes back.
func salvageFile(path string) salvage {
	sv := salvage{records: map[string]map[string][]byte{}}
	f, err := os.Open(path)
	if err != nil {
		sv.lost = append(sv.lost, fmt.Sprintf("nothing to read: %v", err))
		return sv
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || fi.Size() == 0 {
		sv.lost = append(sv.lost, "nothing to read: the file is empty")
		return sv
	}
	pageSize, metas := readMetas(f, fi.Size())
	var gaps []gap
	primary := false
	for _, m := range current(metas) {
		recs, gs, lost, ok := readTree(f, fi.Size(), pageSize, m)
		if !ok {
			sv.lost = append(sv.lost, lost...)
			continue
		}
		if !primary {
			primary = true
			sv.records, gaps, sv.from = recs, gs, fmt.Sprintf("meta page %d (transaction %d)", m.slot, m.txid)
			sv.lost = append(sv.lost, lost...)
			if len(gaps) == 0 {
				break
			}
			continue
		}
		sv.refilled = fill(sv.records, recs, gaps)
		break
	}
	if !primary {
		sv.lost = append(sv.lost, "everything: no valid meta page leads to a readable tree")
	}
	return sv
}

// readTree reads the store's buckets through meta page m. ok is false if
// not even the root page can be read.
func readTree(f *os.File, size int64, pageSize int, m metaInfo) (recs map[string]map[string][]byte, gaps []gap, lost []string, ok bool) {
	r := newPager(f, pageSize, min(m.pgid, uint64(size)/uint64(pageSize)))
	root, err := r.read(m.root)
	if err == nil && root.flags != leafPageFlag && root.flags != branchPageFlag {
		err = fmt.Errorf("page %d: a %s page", m.root, root.kind())
	}
	if err != nil {
		return nil, nil, []string{fmt.Sprintf("the tree of meta page %d: root %v", m.slot, err)}, false
	}
	recs = map[string]map[string][]byte{}
	known := func(name []byte) bool {
		return slices.ContainsFunc(allBuckets, func(b []byte) bool { return string(b) == string(name) })
	}
	var outer visitor
	outer = visitor{
		leaf: func(flags uint32, name, v []byte) error {
			if flags&bucketLeafFlag == 0 || !known(name) {
				return nil
			}
			b := string(name)
			recs[b] = map[string][]byte{}
			return r.bucket(v, 0, visitor{
				leaf: func(flags uint32, k, v []byte) error {
					if flags&bucketLeafFlag == 0 {
						recs[b][string(k)] = slices.Clone(v)
					}
					return nil
				},
				bad: func(lo, hi []byte, err error) error {
					gaps = append(gaps, gap{b, lo, hi})
					lost = append(lost, fmt.Sprintf("bucket %s, %s: %v", b, describeRange(lo, hi), err))
					return nil
				},
			})
		},
		bad: func(lo, hi []byte, err error) error {
			gaps = append(gaps, gap{"", lo, hi})
			lost = append(lost, fmt.Sprintf("the buckets named in %s: %v", describeRange(lo, hi), err))
			return nil
		},
	}
	_ = r.node(root, nil, nil, 0, outer) // the visitors never stop the walk
	return recs, gaps, lost, true
}

// fill adds to recs the records of older that lie in a gap of recs and are
// not in recs, and returns how many it added.
func fill(recs, older map[string]map[string][]byte, gaps []gap) int {
	n := 0
	for _, g := range gaps {
		for b, kv := range older {
			if g.bucket != b && (g.bucket != "" || !inRange([]byte(b), g.lo, g.hi)) {
				continue
			}
			if recs[b] == nil {
				recs[b] = map[string][]byte{}
			}
			for k, v := range kv {
				if _, have := recs[b][k]; !have && (g.bucket == "" || inRange([]byte(k), g.lo, g.hi)) {
					recs[b][k] = v
					n++
				}
			}
		}
	}
	return n
}

// recoverFile replaces the damaged file with a fresh one holding what could
// be read of it, keeps the damaged file beside it, and opens the fresh one.
func (s *Store) recoverFile(reason string, mk marker) (*bolt.DB, error) {
	sv := salvageFile(s.path)
	// Epochs are nanosecond times, or one above the last when the clock went
	// back. The marker holds the last one; the damaged file's own, if it
	// could be read, and the files' modification times bound it too.
	epoch := max(mk.epoch, u64(sv.records[string(metaBucket)][string(epochKey)]),
		mtime(s.path), mtime(filepath.Join(s.dir, MarkerName)))
	clock := max(registry.Stamp(u64(sv.records[string(metaBucket)][string(clockKey)])),
		registry.StampAt(time.Unix(0, int64(mtime(s.path)))))
	tmp := s.path + ".recovering"
	if err := writeFresh(tmp, sv.records, epoch, clock); err != nil {
		os.Remove(tmp)
		return nil, fmt.Errorf("store: recover %s: write the fresh file: %w", s.path, err)
	}
	aside, err := replace(s.path, tmp)
	if err != nil {
		return nil, fmt.Errorf("store: recover %s: %w", s.path, err)
	}
	db, again, err := openChecked(s.path, marker{})
	if err != nil {
		return nil, err
	}
	if again != "" {
		return nil, fmt.Errorf("store: recover %s: the fresh file does not check: %s", s.path, again)
	}
	lost := "nothing"
	if len(sv.lost) > 0 {
		lost = strings.Join(sv.lost[:min(len(sv.lost), 10)], "; ")
		if len(sv.lost) > 10 {
			lost += fmt.Sprintf("; and %d more", len(sv.lost)-10)
		}
	}
	s.log.Warn("store: recovered a damaged store file",
		"file", s.path, "damage", reason, "moved_to", aside, "read_through", sv.from,
		"instances", len(sv.records[string(bucket)]), "tombstones", len(sv.records[string(tombBucket)]),
		"quarantined", len(sv.records[string(quarBucket)]), "refilled_from_previous_commit", sv.refilled,
		"lost", lost, "epoch_floor", epoch)
	return db, nil
}

// writeFresh writes the salvaged records into a new database at path.
func writeFresh(path string, recs map[string]map[string][]byte, epoch uint64, clock registry.Stamp) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return err
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, name := range allBuckets {
			b, err := tx.CreateBucket(name)
			if err != nil {
				return err
			}
			var seq uint64
			for k, v := range recs[string(name)] {
				if err := b.Put([]byte(k), v); err != nil {
					return err
				}
				if len(k) == 8 {
					seq = max(seq, binary.BigEndian.Uint64([]byte(k)))
				}
			}
			if string(name) == string(quarBucket) {
				if err := b.SetSequence(seq); err != nil { // NextSequence must not reuse a key
					return err
				}
			}
		}
		m := tx.Bucket(metaBucket)
		if err := m.Put(epochKey, binary.BigEndian.AppendUint64(nil, epoch)); err != nil {
			return err
		}
		return m.Put(clockKey, binary.BigEndian.AppendUint64(nil, uint64(clock)))
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	return err
}

// replace puts the file fresh at path and keeps what was there (if
// anything) as path.damaged-<UTC time>, which it returns. With a hard link
// the swap is one atomic rename: path never goes missing.
func replace(path, fresh string) (aside string, err error) {
	if _, err := os.Stat(path); err == nil {
		aside = path + ".damaged-" + time.Now().UTC().Format("20060102T150405Z")
		for i := 2; ; i++ {
			if _, err := os.Lstat(aside); errors.Is(err, fs.ErrNotExist) {
				break
			}
			aside = fmt.Sprintf("%s.damaged-%s-%d", path, time.Now().UTC().Format("20060102T150405Z"), i)
		}
		if err := os.Link(path, aside); err != nil {
			if err := os.Rename(path, aside); err != nil {
				return "", fmt.Errorf("move the damaged file aside: %w", err)
			}
		}
	}
	if err := os.Rename(fresh, path); err != nil {
		return "", fmt.Errorf("put the fresh file in place: %w", err)
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		return "", err
	}
	return aside, nil
}

// u64 decodes a stored big-endian number, or 0 if v is not one.
func u64(v []byte) uint64 {
	if len(v) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

// mtime returns the file's modification time in Unix nanoseconds, or 0.
func mtime(path string) uint64 {
	fi, err := os.Stat(path)
	if err != nil || fi.ModTime().UnixNano() < 0 {
		return 0
	}
	return uint64(fi.ModTime().UnixNano())
}
