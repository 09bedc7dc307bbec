package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stackbill/stackbill/internal/clock"
	"github.com/stackbill/stackbill/internal/store/storetest"
)

// TestSimulateRealtime backfills a day and then keeps producing each hour as
// a 3600× simulated clock closes it; /healthz reports the simulated time.
func TestSimulateRealtime(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 6, 1, 0, 30, 0, 0, time.UTC)
	clk, err := clock.Simulated(start, 3600)
	if err != nil {
		t.Fatal(err)
	}
	app := buildApp(t, Options{DB: storetest.DSN(t, "sqlite"), OperatorToken: "sim-op", Clock: clk})
	srv := httptest.NewServer(app.Handler)
	defer srv.Close()
	totals := filepath.Join(t.TempDir(), "totals.json")
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	code := Main(ctx, []string{"simulate", "--url", srv.URL, "--token", "sim-op", "--tenants", "3", "--days", "1", "--realtime", "--totals", totals},
		func(string) string { return "" }, strings.NewReader(""), &out, &errb)
	if code != 0 {
		t.Fatalf("simulate exited %d: %s", code, errb.String())
	}
	if err := app.Usage.Settle(context.Background(), time.Time{}); err != nil {
		t.Fatal(err)
	}
	var hours int
	if err := app.DB.QueryRowContext(context.Background(), `SELECT COUNT(DISTINCT usage_hour_us) FROM usage_records`).Scan(&hours); err != nil {
		t.Fatal(err)
	}
	if hours < 26 { // 24 backfilled, then at least two more produced live
		t.Fatalf("%d usage hours after ~7 simulated hours of real-time play", hours)
	}
	b, err := os.ReadFile(totals)
	var tot map[string]map[string]json.Number
	if err != nil || json.Unmarshal(b, &tot) != nil || len(tot) != 3 {
		t.Fatalf("totals file: %v %s", err, b)
	}
	resp, body := (&testEnv{t: t, url: srv.URL}).raw("GET", "/healthz", "", "", nil)
	if resp.StatusCode != 200 || !strings.Contains(body, `"simulatedClock":true`) || !strings.Contains(body, `"time":"2026-06-01T`) {
		t.Fatalf("healthz: %s", body)
	}
}
