//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package store

import (
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// LockName is the file in the data dir that one process at a time holds
// locked while it has the store open.
const LockName = "store.lock"

// lockDir opens the lock file without locking it: on this system only
// bbolt's own lock of the database guards the data dir.
func lockDir(dir string, _ time.Duration) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, LockName), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("store: lock the data dir: %w", err)
	}
	return f, nil
}
