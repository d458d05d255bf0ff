package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// MarkerName is the small file beside the database that records the last
// epoch. It tells a data dir whose database vanished or was emptied (damage)
// from a new node's, and keeps epochs rising when the database is lost.
const MarkerName = "node-state.json"

type markerFile struct {
	Epoch uint64 `json:"epoch"`
}

// marker is what Open found of the marker file.
type marker struct {
	exists bool
	epoch  uint64
	err    error // why an existing marker could not be read
}

func readMarker(dir string) (marker, error) {
	b, err := os.ReadFile(filepath.Join(dir, MarkerName))
	if errors.Is(err, fs.ErrNotExist) {
		return marker{}, nil
	}
	if err != nil {
		return marker{}, fmt.Errorf("store: %w", err)
	}
	var m markerFile
	if err := json.Unmarshal(b, &m); err != nil {
		return marker{exists: true, err: err}, nil
	}
	return marker{exists: true, epoch: m.Epoch}, nil
}

// writeMarker replaces the marker atomically: a temp file, fsync, rename,
// and an fsync of the dir so that the rename itself is durable.
func writeMarker(dir string, epoch uint64) error {
	b, _ := json.Marshal(markerFile{Epoch: epoch})
	tmp, err := os.CreateTemp(dir, MarkerName+".tmp-*")
	if err != nil {
		return fmt.Errorf("store: write %s: %w", MarkerName, err)
	}
	_, err = tmp.Write(append(b, '\n'))
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), filepath.Join(dir, MarkerName))
	}
	if err == nil {
		err = syncDir(dir)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("store: write %s: %w", MarkerName, err)
	}
	return nil
}

// syncDir makes the creation, rename or removal of entries in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
