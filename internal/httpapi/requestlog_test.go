package httpapi

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stackbill/stackbill/internal/auth"
	"github.com/stackbill/stackbill/internal/clock"
)

// recorder keeps the level of every "request" record and its attributes.
type recorder struct {
	mu      sync.Mutex
	levels  []slog.Level
	carried int // records that reported refusals logged quietly
}

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *recorder) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *recorder) WithGroup(string) slog.Handler            { return r }
func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	if rec.Message != "request" {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.levels = append(r.levels, rec.Level)
	rec.Attrs(func(a slog.Attr) bool {
		if a.Key == "refusals_logged_at_debug_since_last" {
			r.carried++
		}
		return true
	})
	return nil
}

// TestRequestLogLevels: a client's mistakes are debug, so the sign-in
// tokens serve prints do not scroll away under them; refused credentials
// are warnings, but a flood of them is paced, and the next warning says how
// many were logged quietly.
func TestRequestLogLevels(t *testing.T) {
	rec := &recorder{}
	bad := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.Error(w, "bad form", http.StatusBadRequest) })
	s := New(Config{}, Deps{Logger: slog.New(rec), Registry: prometheus.NewRegistry(), Clock: clock.Real(), Auth: sessionAuth{}, Portal: bad})
	srv := httptest.NewServer(s)
	defer srv.Close()
	get := func(path, token string) int {
		req, _ := http.NewRequestWithContext(t.Context(), "GET", srv.URL+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	// A signed-in partner's bad form.
	req, _ := http.NewRequestWithContext(t.Context(), "GET", srv.URL+"/portal/usage", nil)
	req.AddCookie(&http.Cookie{Name: auth.SessionCookie, Value: "session"})
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("a bad form: %d", resp.StatusCode)
	}
	const refused = 300
	for i := 0; i < refused; i++ {
		if code := get("/v1/partners", "sbk_wrong_token"); code != http.StatusUnauthorized {
			t.Fatalf("a wrong token: %d", code)
		}
	}
	// Once the pace allows another warning, it says how many were quiet.
	time.Sleep(time.Second)
	get("/v1/partners", "sbk_wrong_token")
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.levels[0] != slog.LevelDebug {
		t.Errorf("a client error was logged at %v, want debug", rec.levels[0])
	}
	warns := 0
	for _, l := range rec.levels[1:] {
		switch l {
		case slog.LevelWarn:
			warns++
		case slog.LevelDebug:
		default:
			t.Errorf("a refused credential was logged at %v", l)
		}
	}
	if warns == 0 || warns >= refused {
		t.Errorf("%d of %d refusals were warnings: want some, paced", warns, refused+1)
	}
	if rec.carried == 0 {
		t.Error("no warning reported the refusals logged at debug before it")
	}
}
