package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/herald-sd/herald/testenv/wait"
)

// TestJSONLogsOneKeyEach runs a real agent with -log-format json through
// start, a join of a second node (Serf's log lines, through the cluster's
// logger), registrations and shutdown, and parses every line: each is one
// JSON object whose keys appear once, with exactly one component where
// any. The -dev line reports the addresses the node is really bound to.
func TestJSONLogsOneKeyEach(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	a := startAgent(t, "-dev", "-log-format", "json", "-log-level", "debug")
	b := startAgent(t, "-node", "e2e-b", "-join", a.serf, "-log-format", "json")
	a.mustCLI("register", "-service", "api", "-id", "api-1", "-address", "10.0.0.5", "-port", "9000")
	wait.Eventually(t, 10*time.Second, "api-1 on b", func() bool { return strings.Contains(b.instancesOut("api"), "api-1") })
	b.kill()
	wait.Eventually(t, 15*time.Second, "a logs serf's view of b's failure", func() bool {
		return strings.Contains(a.logText(), `"component":"serf"`) && strings.Contains(a.logText(), "e2e-b")
	})

	components := map[string]int{}
	sc := bufio.NewScanner(strings.NewReader(a.logText()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var devLine map[string]any
	for sc.Scan() {
		line := sc.Text()
		keys, err := topLevelKeys(line)
		if err != nil {
			t.Fatalf("not one JSON object: %v\n%s", err, line)
		}
		seen := map[string]bool{}
		for _, k := range keys {
			if seen[k] {
				t.Errorf("key %q twice in %s", k, line)
			}
			seen[k] = true
		}
		var m map[string]any
		json.Unmarshal([]byte(line), &m)
		if c, ok := m["component"].(string); ok {
			components[c]++
		}
		if strings.HasPrefix(fmt.Sprint(m["msg"]), "dev mode") {
			devLine = m
		}
	}
	if components["serf"] == 0 || components["cluster"] == 0 || components["dns"] == 0 {
		t.Errorf("components logged: %v; want serf, cluster and dns among them", components)
	}
	if devLine == nil || devLine["dns"] != a.dns || devLine["grpc"] != a.grpc || devLine["http"] != a.http || devLine["serf"] != a.serf {
		t.Errorf("dev line %v; want dns=%s grpc=%s http=%s serf=%s", devLine, a.dns, a.grpc, a.http, a.serf)
	}
}

// topLevelKeys returns the keys of the JSON object in line, in order,
// repeats included (encoding/json would keep only the last).
func topLevelKeys(line string) ([]string, error) {
	dec := json.NewDecoder(strings.NewReader(line))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, fmt.Errorf("want an object, got %v (%v)", tok, err)
	}
	var keys []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		keys = append(keys, tok.(string))
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return nil, err
		}
	}
	if _, err := dec.Token(); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, fmt.Errorf("more than one value")
	}
	return keys, nil
}
