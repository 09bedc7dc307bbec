// Package e2e is the one harness of stackbill's end-to-end tests: it owns
// building the real binary, starting it on a free loopback port and killing
// it with SIGKILL, the fault-injecting proxy and the round-robin balancer
// that stand between processes, and the one HTTP helper the tests call the
// API with. It is test support: only tests import it.
package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// FreeAddr is a loopback address no one listens on now.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// BuildBinary compiles cmd/stackbill into the test's temporary directory.
// root is the path from the calling test's package to the module root.
func BuildBinary(t testing.TB, root string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "stackbill")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/stackbill")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// WaitHealthy polls base's /healthz until it answers, and reports whether it
// did within about ten seconds.
func WaitHealthy(base string) bool {
	for i := 0; i < 400; i++ {
		if resp, err := http.Get(base + "/healthz"); err == nil {
			resp.Body.Close()
			return true
		}
		time.Sleep(25 * time.Millisecond)
	}
	return false
}

// Proc is a stackbill process.
type Proc struct {
	T    testing.TB
	Bin  string
	Args []string
	Env  []string // added to the test's environment
	URL  string   // the base URL /healthz is polled on
	cmd  *exec.Cmd
}

// Start runs the process and waits until it serves.
func (p *Proc) Start() {
	p.T.Helper()
	p.Launch()
	if !WaitHealthy(p.URL) {
		p.T.Fatal("stackbill did not start")
	}
}

// Launch runs the process without waiting for it to serve: one whose fail
// point its background work reaches as it starts may die before it does.
func (p *Proc) Launch() {
	p.T.Helper()
	cmd := exec.Command(p.Bin, p.Args...)
	cmd.Env = append(os.Environ(), p.Env...)
	if err := cmd.Start(); err != nil {
		p.T.Fatal(err)
	}
	p.cmd = cmd
}

// Kill9 kills the process with SIGKILL, so that no shutdown code runs.
func (p *Proc) Kill9() {
	_ = p.cmd.Process.Kill()
	_ = p.cmd.Wait()
}

// Wait waits for the process to end by itself (a crash point, say) and
// returns how it ended.
func (p *Proc) Wait() error { return p.cmd.Wait() }

// WaitKilled waits up to limit for the process to die of SIGKILL by itself
// (an armed fail point); past limit it kills the process and says so.
func (p *Proc) WaitKilled(limit time.Duration) error {
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		if !KilledBySIGKILL(err) {
			return fmt.Errorf("the process ended, but not killed at its fail point: %v", err)
		}
		return nil
	case <-time.After(limit):
		_ = p.cmd.Process.Kill()
		<-done
		return fmt.Errorf("the process did not reach its fail point in %s", limit)
	}
}

// KilledBySIGKILL reports whether a finished command died of SIGKILL.
func KilledBySIGKILL(err error) bool {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL
}

// Call sends one request (see NewRequest) and returns
// the response with its body read. A nil client is a plain one with a
// 20-second timeout; pass the portal's cookie client to call as a browser.
func Call(t testing.TB, c *http.Client, method, url, token, contentType string, body io.Reader, hdr ...string) (*http.Response, string) {
	t.Helper()
	req := NewRequest(method, url, token, contentType, body, hdr...)
	if req == nil {
		t.Fatalf("bad request URL %q", url)
	}
	if c == nil {
		c = &http.Client{Timeout: 20 * time.Second}
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// NewRequest is a request with a bearer token (none when empty) and a
// content type (none when empty) and other headers as name, value pairs,
// for callers that handle errors
// themselves (goroutines, loops that retry); nil when url is malformed.
func NewRequest(method, url, token, contentType string, body io.Reader, hdr ...string) *http.Request {
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		return nil
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	return req
}

// FaultProxy stands in front of a server and, while Faults is on, fails
// requests in every way a network and a struggling server do: an error
// status, a dropped connection before or after the server did the work, and
// a hang. Counts says how often it did each.
type FaultProxy struct {
	target string
	Faults atomic.Bool
	mu     sync.Mutex
	rnd    *rand.Rand
	counts map[string]int
}

// NewFaultProxy proxies to target, choosing faults from seed.
func NewFaultProxy(target string, seed uint64) *FaultProxy {
	return &FaultProxy{target: target, rnd: rand.New(rand.NewPCG(seed, seed+1)), counts: map[string]int{}}
}

// FaultModes are the faults a FaultProxy injects.
func FaultModes() []string { return []string{"error", "drop", "drop-after", "hang"} }

// Counts is how many requests met each fault so far.
func (c *FaultProxy) Counts() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]int{}
	for k, v := range c.counts {
		out[k] = v
	}
	return out
}

func (c *FaultProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	mode := "pass"
	if c.Faults.Load() {
		c.mu.Lock()
		switch p := c.rnd.Float64(); {
		case p < 0.50:
		case p < 0.62:
			mode = "error"
		case p < 0.74:
			mode = "drop"
		case p < 0.86:
			mode = "drop-after"
		default:
			mode = "hang"
		}
		c.counts[mode]++
		c.mu.Unlock()
	}
	switch mode {
	case "error":
		http.Error(w, `{"error":{"code":"ServiceUnavailable","message":"injected fault"}}`, http.StatusServiceUnavailable)
		return
	case "drop":
		hangUp(w)
		return
	case "hang":
		time.Sleep(1500 * time.Millisecond)
	}
	resp, err := forward(r, c.target, body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	if mode == "drop-after" {
		hangUp(w) // the server did the work; the client never hears of it
		return
	}
	copyHeader(w, resp)
	_, _ = w.Write(out)
}

// RoundRobin is a load balancer without sticky sessions: each request goes
// to the next backend, and to the one after it when a backend is down.
type RoundRobin struct {
	mu       sync.Mutex
	backends []string
	next     atomic.Uint64
}

// SetBackends replaces the backends' base URLs.
func (lb *RoundRobin) SetBackends(urls ...string) {
	lb.mu.Lock()
	lb.backends = urls
	lb.mu.Unlock()
}

func (lb *RoundRobin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	lb.mu.Lock()
	backends := lb.backends
	lb.mu.Unlock()
	start := lb.next.Add(1)
	for i := range backends {
		resp, err := forward(r, backends[(int(start)+i)%len(backends)], body)
		if err != nil {
			continue // this backend is down: fail over
		}
		copyHeader(w, resp)
		_, _ = io.Copy(w, resp.Body)
		resp.Body.Close()
		return
	}
	http.Error(w, "no backend", http.StatusBadGateway)
}

func forward(r *http.Request, target string, body []byte) (*http.Response, error) {
	req, err := http.NewRequestWithContext(r.Context(), r.Method, target+r.URL.RequestURI(), bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header = r.Header.Clone()
	return http.DefaultClient.Do(req)
}

func copyHeader(w http.ResponseWriter, resp *http.Response) {
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(resp.StatusCode)
}

func hangUp(w http.ResponseWriter) {
	if hj, ok := w.(http.Hijacker); ok {
		if conn, _, err := hj.Hijack(); err == nil {
			conn.Close()
		}
	}
}
