package store

import (
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The check at open: first the file's structure, read with the bounds-checked
// reader, so that bbolt only ever follows page references that lie inside
// the file; then bbolt's own consistency check. Any damage refuses the open.

// ErrDamaged is wrapped by every error that reports a damaged store file.
var ErrDamaged = errors.New("store file damaged")

// DamageError says which file is damaged and how. It wraps ErrDamaged. Its
// message names the agent's -recover-store flag, which sets Options.Recover.
type DamageError struct {
	Path   string
	Reason string
}

func (e *DamageError) Error() string {
	return fmt.Sprintf("store: %s is damaged (%s); start with -recover-store to move it aside and keep what can be read", e.Path, e.Reason)
}

// Unwrap makes errors.Is(err, ErrDamaged) true.
func (e *DamageError) Unwrap() error { return ErrDamaged }

// inspect checks the structure of the store file at path, which exists and
// is not empty. It returns why the file is damaged, or "" if bbolt can
// safely open it.
func inspect(path string) (reason string, err error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("store: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("store: %w", err)
	}
	size := fi.Size()
	pageSize, metas := readMetas(f, size)
	if pageSize == 0 {
		if size < 4*minPageSize {
			return fmt.Sprintf("cut off at %d bytes, shorter than the smallest valid file", size), nil
		}
		return fmt.Sprintf("meta page checksums do not match: %v; %v", metas[0].err, metas[1].err), nil
	}
	if size < 4*int64(pageSize) {
		return fmt.Sprintf("cut off at %d bytes, shorter than the 4 pages of an empty file", size), nil
	}
	if size%int64(pageSize) != 0 {
		return fmt.Sprintf("its %d bytes are not a whole number of %d-byte pages: cut off or extended", size, pageSize), nil
	}
	// Like bbolt, use the newer meta page if it is valid, else the other.
	m := current(metas)[0]
	if reason := checkTree(f, size, m); reason != "" {
		return reason, nil
	}
	return "", nil
}

// checkTree checks that every page the meta page m reaches lies inside the
// file and holds well-formed elements.
func checkTree(f *os.File, size int64, m metaInfo) string {
	pages := uint64(size) / uint64(m.pageSize)
	switch {
	case m.pgid < 4 || m.pgid > pages:
		return fmt.Sprintf("cut off: meta page %d counts %d pages, the file holds %d", m.slot, m.pgid, pages)
	case m.freelist != noFreelist && (m.freelist < 2 || m.freelist >= m.pgid):
		return fmt.Sprintf("meta page %d puts the freelist at page %d, outside [2, %d)", m.slot, m.freelist, m.pgid)
	}
	r := newPager(f, m.pageSize, m.pgid)
	if m.freelist != noFreelist {
		if err := r.freelist(m.freelist); err != nil {
			return err.Error()
		}
	}
	stop := func(lo, hi []byte, err error) error { return err }
	var inner visitor // the records of a bucket, and the buckets nested in it
	inner = visitor{
		leaf: func(flags uint32, k, v []byte) error {
			if flags&bucketLeafFlag == 0 {
				return nil
			}
			return r.bucket(v, 0, inner)
		},
		bad: stop,
	}
	top := visitor{ // the root bucket holds nothing but buckets
		leaf: func(flags uint32, k, v []byte) error {
			if flags&bucketLeafFlag == 0 {
				return fmt.Errorf("the root bucket holds %q, which is not a bucket", k)
			}
			return r.bucket(v, 0, inner)
		},
		bad: stop,
	}
	if err := r.tree(m.root, nil, nil, 0, top); err != nil {
		return err.Error()
	}
	return ""
}

// openBolt opens a file that passed inspect with bbolt and runs bbolt's
// consistency check. A panic or memory fault inside bbolt becomes a reason.
func openBolt(path string) (db *bolt.DB, reason string, err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			if db != nil {
				db.Close()
			}
			db, reason, err = nil, fmt.Sprintf("bbolt could not read it: %v", r), nil
		}
	}()
	db, err = bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	switch {
	case errors.Is(err, bolt.ErrTimeout):
		return nil, "", fmt.Errorf("store: %s is in use by another process (is another agent using this -data-dir?)", path)
	case errors.Is(err, bolt.ErrInvalid), errors.Is(err, bolt.ErrChecksum), errors.Is(err, bolt.ErrVersionMismatch):
		return nil, err.Error(), nil
	case err != nil:
		return nil, "", fmt.Errorf("store: open %s: %w", path, err)
	}
	if reason := boltCheck(db); reason != "" {
		db.Close()
		return nil, reason, nil
	}
	return db, "", nil
}

// boltCheck runs bbolt's consistency check and returns its findings.
func boltCheck(db *bolt.DB) string {
	var found []string
	n := 0
	err := db.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() { // drain it: the checker blocks on every error
			if n++; len(found) < 3 {
				found = append(found, err.Error())
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Sprintf("consistency check: %v", err)
	}
	if n == 0 {
		return ""
	}
	if n > len(found) {
		found = append(found, fmt.Sprintf("and %d more", n-len(found)))
	}
	return "consistency check: " + strings.Join(found, "; ")
}
