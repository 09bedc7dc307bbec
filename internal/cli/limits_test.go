package cli

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stackbill/stackbill/internal/e2e"
)

// startServe runs `stackbill serve` with args on a free loopback port until
// the test ends, and returns its base URL.
func startServe(t *testing.T, env map[string]string, args ...string) string {
	t.Helper()
	addr := e2e.FreeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() {
		done <- Main(ctx, append([]string{"serve", "--addr", addr}, args...), func(k string) string { return env[k] }, strings.NewReader(""), io.Discard, io.Discard)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	base := "http://" + addr
	if !e2e.WaitHealthy(base) {
		t.Fatal("serve did not start")
	}
	return base
}

// slowRequest sends a request's headers and then its body one byte at a
// time, the way a slow or malicious client does; it returns when the server
// closes the connection, or after limit.
func slowRequest(t *testing.T, base, token string, limit time.Duration) (closed time.Duration) {
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Error(err)
		return limit
	}
	defer conn.Close()
	start := time.Now()
	fmt.Fprintf(conn, "POST /v1/usage/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: application/x-ndjson\r\nContent-Length: 100000\r\n\r\n", token)
	gone := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, bufio.NewReader(conn))
		close(gone)
	}()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for time.Since(start) < limit {
		select {
		case <-gone:
			return time.Since(start)
		case <-tick.C:
			if _, err := conn.Write([]byte("{")); err != nil {
				return time.Since(start)
			}
		}
	}
	return limit
}

// TestLimits proves each limit answers a clear 4xx and leaves the server
// healthy: per-token rate limits (429 with Retry-After), the in-flight limit
// (429), oversized bodies (413) and slow bodies (cut off at the read timeout
// while health checks and other clients are served).
func TestLimits(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for read timeouts")
	}
	env := map[string]string{"STACKBILL_OPERATOR_TOKEN": "op-limits"}
	db := filepath.Join(t.TempDir(), "limits.db")
	base := startServe(t, env, "--db", db, "--rate-limit", "5", "--rate-burst", "5", "--max-inflight", "4", "--read-timeout", "2s", "--max-body-bytes", "1024")

	// Rate: five at once, then 429 with Retry-After; another token is not affected.
	var limited *http.Response
	for i := 0; i < 10; i++ {
		resp, body := e2e.Call(t, nil, "GET", base+"/v1/stack/info", "op-limits", "", nil)
		if i < 5 && resp.StatusCode != 200 {
			t.Fatalf("request %d within the burst: %d %s", i, resp.StatusCode, body)
		}
		if resp.StatusCode == 429 {
			limited = resp
			if !strings.Contains(body, "TooManyRequests") {
				t.Fatalf("429 body: %s", body)
			}
		}
	}
	if limited == nil || limited.Header.Get("Retry-After") == "" {
		t.Fatalf("ten requests at once against a limit of 5/s: no 429 with Retry-After")
	}
	res := runCLI(t, nil, "token", "create", "--db", db, "--role", "stack-operator")
	other := strings.TrimSpace(res.stdout)
	if resp, body := e2e.Call(t, nil, "GET", base+"/v1/stack/info", other, "", nil); resp.StatusCode != 200 {
		t.Fatalf("another token was limited too: %d %s", resp.StatusCode, body)
	}
	writer := strings.TrimSpace(runCLI(t, nil, "token", "create", "--db", db, "--role", "usage-writer").stdout)

	// Oversized body (intake allows 32 × --max-body-bytes): 413.
	if resp, body := e2e.Call(t, nil, "POST", base+"/v1/usage/events", writer, "application/x-ndjson", strings.NewReader(strings.Repeat(" ", 40*1024))); resp.StatusCode != 413 || !strings.Contains(body, "RequestEntityTooLarge") {
		t.Fatalf("oversized body: %d %s", resp.StatusCode, body)
	}

	// Four slow clients fill the in-flight limit; a fifth request gets 429,
	// health checks still answer, and the slow ones are cut off at the read
	// timeout, which frees the server.
	results := make(chan time.Duration, 4)
	for i := 0; i < 4; i++ {
		go func() { results <- slowRequest(t, base, writer, 15*time.Second) }()
	}
	time.Sleep(700 * time.Millisecond)
	if resp, body := e2e.Call(t, nil, "GET", base+"/v1/stack/info", other, "", nil); resp.StatusCode != 429 || !strings.Contains(body, "TooManyRequests") {
		t.Fatalf("with four requests in flight (limit 4): %d %s", resp.StatusCode, body)
	}
	for i := 0; i < 5; i++ {
		resp, err := http.Get(base + "/healthz")
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("health check while saturated: %v %v", resp, err)
		}
		resp.Body.Close()
	}
	for i := 0; i < 4; i++ {
		if d := <-results; d >= 15*time.Second {
			t.Fatalf("a slow body was not cut off (read timeout 2s): still open after %s", d)
		}
	}
	time.Sleep(1100 * time.Millisecond) // the rate bucket of "other" refills
	if resp, body := e2e.Call(t, nil, "GET", base+"/v1/stack/info", other, "", nil); resp.StatusCode != 200 {
		t.Fatalf("after the slow clients were cut off: %d %s", resp.StatusCode, body)
	}
}
