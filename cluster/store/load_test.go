package store

import (
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/herald-sd/herald/cluster/registry"
)

// A single bad record is set aside and logged; everything else loads.
func TestBadRecordsAreQuarantined(t *testing.T) {
	dir, _ := fixtureDir(t)
	st, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	good := `{"service":"api","id":"x","address":"10.0.0.1","port":1,"weight":1,"status":"passing","stamp":1}`
	bad := []struct{ bucket, key, value, reason string }{
		{"instances", "api/json", `{"service":`, "not a stored instance"},
		{"instances", "api/x", strings.Replace(good, "10.0.0.1", "10.0.0.300", 1), "address"},
		{"instances", "api/x2", strings.Replace(strings.Replace(good, `"x"`, `"x2"`, 1), "passing", "sleepy", 1), "status"},
		{"instances", "api/x3", strings.Replace(strings.Replace(good, `"x"`, `"x3"`, 1), `"port":1`, `"port":0`, 1), "invalid port"},
		{"instances", "api/y", good, "another key"},
		{"tombstones", "api/t1", "1234567", "stamp is 7 bytes"},
		{"tombstones", "API NAME/t2", "12345678", "invalid service"},
	}
	if err := st.update(func(tx *bolt.Tx) error {
		for _, r := range bad {
			if err := tx.Bucket([]byte(r.bucket)).Put([]byte(r.key), []byte(r.value)); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	st.Close()

	var log logBuffer
	st, err = Open(dir, Options{Logger: log.logger()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	got, err := st.Load()
	if err != nil {
		t.Fatalf("Load with bad records: %v", err)
	}
	if len(got.Instances) != fixtureN || len(got.Tombstones) != fixtureTombs {
		t.Fatalf("loaded %d instances and %d tombstones, want %d and %d", len(got.Instances), len(got.Tombstones), fixtureN, fixtureTombs)
	}
	q := map[string]quarantined{}
	for _, r := range readQuarantine(t, st) {
		q[r.Bucket+" "+string(r.Key)] = r
	}
	if len(q) != len(bad) {
		t.Fatalf("quarantined %d records, want %d: %+v", len(q), len(bad), q)
	}
	for _, r := range bad {
		got, ok := q[r.bucket+" "+r.key]
		if !ok || string(got.Value) != r.value || !strings.Contains(got.Reason, r.reason) {
			t.Errorf("quarantined %s %q: %v %q, want the stored value and a reason mentioning %q", r.bucket, r.key, ok, got.Reason, r.reason)
		}
		if !strings.Contains(log.String(), `key="\"`+r.key) {
			t.Errorf("the log does not name %q:\n%s", r.key, log.String())
		}
	}
	// They are gone from their buckets: the next load is clean.
	if again, _ := st.Load(); len(again.Instances) != fixtureN || len(readQuarantine(t, st)) != len(bad) {
		t.Fatalf("second load: %d instances, quarantine %d", len(again.Instances), len(readQuarantine(t, st)))
	}
	r, err := registry.New(registry.Config{Node: "n1", Store: st})
	if err != nil {
		t.Fatalf("registry over a store with quarantined records: %v", err)
	}
	r.Close()
}
