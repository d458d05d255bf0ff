package main

// Consul-style blocking queries (issue 15): 1,000 of them, each on a
// service of its own, wait while another service changes. Consul's index is
// global, so there every one of them would wake for every change; Herald's
// are per service and must see none. Then one of the 1,000 services changes
// and exactly its query must wake.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func init() { register("consul-blocking", benchConsulBlocking) }

func benchConsulBlocking(ctx context.Context, _ *benchEnv) error {
	const queries, conns, hotChanges = 1000, 10, 20
	fmt.Printf("%d blocking GET /v1/health/service/sN?index=&wait=60s, one per service, over %d h2c connections; then %d changes to another service, then one to s0\n", queries, conns, hotChanges)
	srv, err := startPushServer(ctx, pushChildHTTPEnv+"=1")
	if err != nil {
		return err
	}
	defer srv.stop()
	line, err := srv.line()
	if err != nil || !strings.HasPrefix(line, "http ") {
		return fmt.Errorf("push server said %q: %v", line, err)
	}
	base := "http://" + strings.TrimPrefix(line, "http ")
	put := func(service, id string) error {
		req, err := http.NewRequestWithContext(ctx, "PUT", base+"/v1/services/"+service+"/"+id, bytes.NewBufferString(`{"address":"10.1.0.1","port":9000}`))
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("register %s/%s: %s", service, id, resp.Status)
		}
		return nil
	}
	for i := range queries {
		if err := put(fmt.Sprintf("s%d", i), "a"); err != nil {
			return err
		}
	}
	if err := put("hot", "h"); err != nil {
		return err
	}
	clients := make([]*http.Client, conns)
	for i := range clients {
		tr := &http.Transport{Protocols: new(http.Protocols)}
		tr.Protocols.SetUnencryptedHTTP2(true)
		defer tr.CloseIdleConnections()
		clients[i] = &http.Client{Transport: tr}
	}
	get := func(hc *http.Client, path string) (uint64, error) {
		req, err := http.NewRequestWithContext(ctx, "GET", base+path, nil)
		if err != nil {
			return 0, err
		}
		resp, err := hc.Do(req)
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != 200 {
			return 0, fmt.Errorf("GET %s: %s", path, resp.Status)
		}
		return strconv.ParseUint(resp.Header.Get("X-Consul-Index"), 10, 64)
	}
	consulStats := func() (blocking, wakeups int64, err error) {
		if _, err := fmt.Fprintln(srv.in, "consul"); err != nil {
			return 0, 0, err
		}
		l, err := srv.line()
		if err != nil {
			return 0, 0, err
		}
		_, err = fmt.Sscanf(l, "consul %d %d", &blocking, &wakeups)
		return blocking, wakeups, err
	}

	var woke atomic.Int32
	wokeAt := make([]atomic.Int64, queries)
	var wg sync.WaitGroup
	errs := make(chan error, queries)
	for i := range queries {
		hc := clients[i%conns]
		path := fmt.Sprintf("/v1/health/service/s%d", i)
		idx, err := get(hc, path)
		if err != nil {
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := get(hc, fmt.Sprintf("%s?index=%d&wait=60s", path, idx)); err != nil {
				errs <- err
				return
			}
			wokeAt[i].Store(time.Now().UnixNano())
			woke.Add(1)
		}()
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		b, _, err := consulStats()
		if err != nil {
			return err
		}
		if b == queries {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d queries blocking after 60s", b, queries)
		}
		time.Sleep(10 * time.Millisecond)
	}
	_, wake0, _ := consulStats()

	// The changes to hot, each seen by a blocking query on hot (a witness
	// that it went through the feed that the 1,000 read).
	hotIdx, err := get(http.DefaultClient, "/v1/health/service/hot")
	if err != nil {
		return err
	}
	for k := range hotChanges {
		done := make(chan error, 1)
		go func() {
			idx, err := get(http.DefaultClient, fmt.Sprintf("/v1/health/service/hot?index=%d&wait=30s", hotIdx))
			hotIdx = idx
			done <- err
		}()
		for {
			b, _, _ := consulStats()
			if b == queries+1 {
				break
			}
			time.Sleep(time.Millisecond)
		}
		if err := put("hot", fmt.Sprintf("h%d", k)); err != nil {
			return err
		}
		if err := <-done; err != nil {
			return err
		}
	}
	_, wake1, _ := consulStats()
	otherWakeups := woke.Load()

	// A change to s0 wakes s0's query, and only it.
	start := time.Now()
	if err := put("s0", "b"); err != nil {
		return err
	}
	for woke.Load() == otherWakeups {
		if time.Since(start) > 10*time.Second {
			return fmt.Errorf("the query on s0 did not wake within 10s")
		}
		time.Sleep(100 * time.Microsecond)
	}
	s0 := time.Unix(0, wokeAt[0].Load()).Sub(start)
	b, wake2, _ := consulStats()
	fmt.Printf("%-46s %8s\n", "figure", "value")
	fmt.Printf("%-46s %8d\n", "queries blocking", queries)
	fmt.Printf("%-46s %8d\n", "wake-ups of the 1,000 for 20 changes to hot", otherWakeups)
	fmt.Printf("%-46s %8d\n", "server wake-ups counted (20 are hot's witness)", wake1-wake0)
	fmt.Printf("%-46s %8d\n", "wake-ups for one change to s0", wake2-wake1)
	fmt.Printf("%-46s %8s\n", "s0 change to its query's answer", pushDur(s0))
	fmt.Printf("%-46s %8d\n", "queries still blocking after", b)
	select {
	case err := <-errs:
		return err
	default:
	}
	if otherWakeups != 0 {
		return fmt.Errorf("%d of the %d queries woke for changes to another service", otherWakeups, queries)
	}
	srv.stop() // ends the remaining queries
	wg.Wait()
	return nil
}
