package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stackbill/stackbill/internal/auth"
	"github.com/stackbill/stackbill/internal/bridge"
	"github.com/stackbill/stackbill/internal/clock"
	"github.com/stackbill/stackbill/internal/money"
	"github.com/stackbill/stackbill/internal/registration"
	"github.com/stackbill/stackbill/internal/simulate"
	"github.com/stackbill/stackbill/internal/store"
	"github.com/stackbill/stackbill/internal/store/storetest"
	"github.com/stackbill/stackbill/internal/usage"
	"github.com/stackbill/stackbill/internal/wire"
)

// TestStreamBatchesDeduplicateByPosition checks commerce's deduplication of
// stream batches by their place in the stack's order, on both engines: a
// batch that starts where the stream stands is taken whole; a repeated one
// (a lost answer, a stack restored from a backup that numbers its records
// anew) counts none of its records twice and every new one once; a batch
// that starts ahead is refused with where the stream stands and changes
// nothing; a batch without a position is checked record by record, also
// against records taken by position; and positions that do not hold their
// records are refused. Every record's quantity is a distinct power of two,
// so the total names exactly which records were counted.
func TestStreamBatchesDeduplicateByPosition(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, backend string) {
		e := newTestEnv(t, backend)
		ctx := t.Context()
		op := auth.Principal{Role: auth.RoleOperator, TokenID: "t"}
		e.createRegistration(W.ContosoDefault, "azurestack", "stream-stamp", registration.PayAsYouUse, true)
		reg, _ := e.app.Registrations.Get(ctx, op, regKey(W.ContosoDefault, "azurestack", "stream-stamp"))
		tok, _ := e.app.Auth.CreateBridge(ctx, "test", "contoso", reg.UID, "contoso")
		h1 := clock.HourStart(e.app.Clock.Now()).Add(-6 * time.Hour)
		h2, h3 := h1.Add(time.Hour), h1.Add(2*time.Hour)
		sub := randomGUID()
		rec := func(i int, reported time.Time) wire.Record {
			r := wire.Record{SubscriptionID: sub, TenantID: randomGUID(), MeterID: simulate.MeterBaseVM, Quantity: money.FromInt(int64(1) << i),
				UsageHour: h1.Add(-time.Hour), ReportedHour: reported, ResourceURI: fmt.Sprintf("/r/vm%d", i), Location: "local"}
			r.SetID(reg.CloudID)
			return r
		}
		r := make([]wire.Record, 10)
		for i := range 3 {
			r[i] = rec(i, h1)
		}
		for i := 3; i < 8; i++ {
			r[i] = rec(i, h2)
		}
		r[8], r[9] = rec(8, h3), rec(9, h3)
		pos := func(h time.Time, seq int64) wire.Position {
			return wire.Position{ReportedHour: clock.Micros(h), ID: seq}
		}
		post := func(stream *wire.Stream, recs ...wire.Record) (int, string, string) {
			t.Helper()
			b, _ := json.Marshal(wire.Batch{CloudID: reg.CloudID, Stream: stream, Records: recs})
			resp, body := e.raw("POST", "/v1/bridge/usage", tok, "application/json", strings.NewReader(string(b)))
			return resp.StatusCode, body, resp.Header.Get(wire.StreamAtHeader)
		}
		expect := func(name string, stream *wire.Stream, want string, recs ...wire.Record) {
			t.Helper()
			if st, body, _ := post(stream, recs...); st != 200 || !strings.Contains(body, want) {
				t.Fatalf("%s: %d %s, want %s", name, st, body, want)
			}
		}
		total := func() string {
			t.Helper()
			totals, err := e.app.Ledger.Totals(ctx, []string{W.ContosoDefault}, h1.Add(-time.Hour), h1)
			if err != nil || len(totals) != 1 {
				t.Fatalf("totals %+v %v", totals, err)
			}
			return totals[0].Quantity.String()
		}

		// A new stack's first two batches, in flight together, arrive the
		// wrong way round: the second finds no stream and is checked record
		// by record; the first then counts too, although the stream stands
		// past it (found by TestBridgeChaosMillion on PostgreSQL).
		expect("second batch first", &wire.Stream{After: pos(h1, 3), Through: pos(h2, 6)}, `"accepted":3,"duplicates":0`, r[3], r[4], r[5])
		expect("first batch", &wire.Stream{After: wire.Position{}, Through: pos(h1, 3)}, `"accepted":3,"duplicates":0`, r[0], r[1], r[2])
		expect("first batch again", &wire.Stream{After: wire.Position{}, Through: pos(h1, 3)}, `"accepted":0,"duplicates":3`, r[0], r[1], r[2])
		// Its answer was lost: the same batch again counts nothing (its
		// records are still in the log, so commerce settles them first).
		expect("the second batch again", &wire.Stream{After: pos(h1, 3), Through: pos(h2, 6)}, `"accepted":0,"duplicates":3`, r[3], r[4], r[5])
		if got := total(); got != "63" {
			t.Fatalf("after a repeated batch: %s, want 63", got)
		}
		// A batch ahead of the stream (its predecessor not in yet, or lost
		// by commerce): refused, with where the stream stands.
		st, body, at := post(&wire.Stream{After: pos(h2, 9), Through: pos(h3, 12)}, r[8])
		var where wire.Position
		if st != 409 || !strings.Contains(body, `"code":"BatchOutOfOrder"`) || json.Unmarshal([]byte(at), &where) != nil || where != pos(h2, 6) {
			t.Fatalf("a batch ahead of the stream: %d %s %q", st, body, at)
		}
		// A stack restored from a backup taken after the first batch numbers
		// hour h2 anew (r3..r5 now 7..9, and a record the first life never
		// had), then goes on: what repeats counts once, what is new counts.
		expect("a restored stack", &wire.Stream{After: pos(h1, 3), Through: pos(h3, 2)}, `"accepted":2,"duplicates":4`, r[3], r[4], r[5], r[6], r[8], r[0])
		// A record before the stream's hour is a duplicate by its place.
		expect("an old hour", &wire.Stream{After: wire.Position{}, Through: pos(h1, 3)}, `"accepted":0,"duplicates":3`, r[0], r[1], r[2])
		if got := total(); got != "383" {
			t.Fatalf("after a restored stack: %s, want 383 (r0..r6, r8)", got)
		}
		// Inside the stream's contiguous run a repeated batch is judged by
		// place alone, without a lookup: a record there that commerce never
		// had (r7, which no stack forwarded this way) is not taken.
		expect("inside the run", &wire.Stream{After: pos(h1, 3), Through: pos(h2, 6)}, `"accepted":0,"duplicates":1`, r[7])
		// Without a position (written by hand, or released from a
		// quarantine), records are looked up one by one, and so are found
		// among those taken by position.
		expect("no position", nil, `"accepted":2,"duplicates":2`, r[6], r[7], r[8], r[9])
		// The stream goes on from where it stands, in the binary layout.
		next := wire.Batch{CloudID: reg.CloudID, Stream: &wire.Stream{After: pos(h3, 2), Through: pos(h3, 4)}, Records: []wire.Record{r[9]}}
		raw, err := next.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if resp, body := e.raw("POST", "/v1/bridge/usage", tok, wire.ContentTypeBinary, bytes.NewReader(raw)); resp.StatusCode != 200 || !strings.Contains(body, `"accepted":0,"duplicates":1`) {
			t.Fatalf("binary stream batch: %d %s", resp.StatusCode, body)
		}
		// Positions that do not hold their records, or run backwards: 400,
		// and nothing moves.
		for name, s := range map[string]*wire.Stream{
			"record outside": {After: pos(h3, 4), Through: pos(h3, 9)},
			"backwards":      {After: pos(h3, 9), Through: pos(h3, 4)},
			"negative":       {After: wire.Position{ReportedHour: -1}, Through: pos(h3, 9)},
		} {
			extra := rec(20, h3.Add(time.Hour))
			if st, body, _ := post(s, extra); st != 400 {
				t.Fatalf("%s: %d %s", name, st, body)
			}
		}
		if got := total(); got != "1023" {
			t.Fatalf("total %s, want 1023 (every record once)", got)
		}
		if err := e.app.Ledger.Settle(ctx); err != nil {
			t.Fatal(err)
		}
		if n, err := e.app.Ledger.Stored(ctx, reg.CloudID); err != nil || n != 10 {
			t.Fatalf("stored %d records, want 10: %v", n, err)
		}
	})
}

// TestBridgeForwardsAgainWhenCommerceLostUsage restores commerce's database
// to a point before the stack's last acknowledged batches (both engines):
// the stack's next batch starts past where commerce's stream stands, the
// stack is told where that is, rewinds its outbox to it and forwards the
// lost hours again, and commerce ends with every record once.
func TestBridgeForwardsAgainWhenCommerceLostUsage(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, backend string) {
		ctx := t.Context()
		t0 := time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC)
		clk, com, stack := newStackPair(t, backend, t0, 7)
		sub, rp := reportingStack(t, com, stack, "lost")
		want := 0
		report := func(h int) {
			t.Helper()
			hour := t0.Add(time.Duration(h) * time.Hour)
			var evs []usage.Event
			for r := range 5 {
				evs = append(evs, ev(fmt.Sprintf("e-%d-%d", h, r), sub, simulate.MeterBaseVM, fmt.Sprint(1+r), hour, hour.Add(time.Hour), fmt.Sprintf("/subscriptions/%s/resourceGroups/rg/providers/x/y/vm%d", sub, r)))
				want += 1 + r
			}
			clk.Set(hour.Add(time.Hour + time.Minute))
			if _, err := rp.Post(ctx, evs); err != nil {
				t.Fatal(err)
			}
		}
		forward := func() (sent int, errs int) {
			t.Helper()
			for range 100 {
				n, err := stack.Forwarder.Step(ctx)
				if err != nil {
					errs++
					continue
				}
				if n == 0 {
					return sent, errs
				}
				sent += n
			}
			t.Fatal("the forwarder did not finish")
			return
		}
		for h := range 10 {
			report(h)
		}
		clk.Set(t0.Add(11*time.Hour + bridge.Grace))
		if n, errs := forward(); n != 50 || errs != 0 {
			t.Fatalf("forwarded %d records with %d errors, want 50 and none", n, errs)
		}
		// Commerce's database goes back to a backup taken when it had the
		// records of the first five reported hours: the rest is gone, and
		// its stream stands where the stack's stood then.
		if err := com.app.Ledger.Settle(ctx); err != nil {
			t.Fatal(err)
		}
		// Usage of hour h is reported in hour h+1.
		lastKept := clock.Micros(t0.Add(5 * time.Hour))
		var seq int64
		if err := stack.DB.QueryRowContext(ctx, `SELECT MAX(id) FROM usage_records WHERE reported_hour_us <= ?`, lastKept).Scan(&seq); err != nil {
			t.Fatal(err)
		}
		if err := com.app.DB.Write(ctx, func(tx *store.Tx) error {
			if _, err := tx.ExecContext(ctx, `DELETE FROM commerce_usage WHERE reported_hour_us > ?`, lastKept); err != nil {
				return err
			}
			_, err := tx.ExecContext(ctx, `UPDATE commerce_streams SET reported_hour_us = ?, seq = ?`, lastKept, seq)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		report(10)
		clk.Set(t0.Add(12*time.Hour + bridge.Grace))
		// The first attempt is refused with commerce's position; the stack
		// rewinds and sends the lost hours and the new one.
		sent, errs := forward()
		if errs != 1 || sent != 30 {
			t.Fatalf("after the restore the stack sent %d records with %d errors; want 30 (usage hours 5–9 again, 5 records each, and hour 10) after one refusal", sent, errs)
		}
		if got := ledgerTotal(t, com.app, []string{W.ContosoDefault}, t0, t0.Add(24*time.Hour)); got != fmt.Sprint(want) {
			t.Fatalf("commerce holds %s, want %d", got, want)
		}
	})
}

// TestStackClockGoingBackLosesNoUsage: the stack's clock steps back by
// hours after the bridge sealed later reported hours (a host restored with
// the wrong time, an NTP step). Usage taken then is received no earlier
// than the batch before it, not in hours the bridge has sealed and never
// reads again, so it is forwarded and billed once; and a restarted stack
// keeps that floor from what it stored.
func TestStackClockGoingBackLosesNoUsage(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, backend string) {
		ctx := t.Context()
		t0 := time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC)
		clk := clock.Manual(t0)
		com := newTestEnv(t, backend, func(o *Options) { o.Clock = clk })
		opts := stackOptions(t, clk, 7)
		stack := buildApp(t, opts)
		sub, rp := reportingStack(t, com, stack, "clock")
		want := 0
		post := func(id string, hour time.Time, qty int) {
			t.Helper()
			e := ev(id, sub, simulate.MeterBaseVM, fmt.Sprint(qty), hour, hour.Add(time.Hour), fmt.Sprintf("/subscriptions/%s/resourceGroups/rg/providers/x/y/vm-%s", sub, id))
			r, err := rp.Post(ctx, []usage.Event{e})
			if err != nil || r.Accepted != 1 {
				t.Fatalf("posting %s: %+v, %v", id, r, err)
			}
			want += qty
		}
		for h := range 5 {
			hour := t0.Add(time.Duration(h) * time.Hour)
			clk.Set(hour.Add(time.Hour + time.Minute))
			post(fmt.Sprintf("on-time-%d", h), hour, 1<<h)
		}
		clk.Set(t0.Add(6*time.Hour + bridge.Grace))
		if n := forwardAll(t, stack); n != 5 {
			t.Fatalf("forwarded %d records, want 5", n)
		}
		// The clock steps back four hours, behind every sealed hour.
		clk.Set(t0.Add(2*time.Hour + time.Minute))
		post("after-the-step-1", t0.Add(time.Hour), 1<<5)
		// The last batch was received at 5:01, so the clock is 3 hours behind.
		if n, d := stack.Usage.ClockBehind(); n != 1 || d != 3*time.Hour {
			t.Fatalf("intake says %d batches came with the clock %v behind, want 1 and 3h", n, d)
		}
		// The stack restarts while its clock is still behind.
		stack.Close()
		stack = buildApp(t, opts)
		srv := httptest.NewServer(stack.Handler)
		defer srv.Close()
		rp = &simulate.Reporter{Base: srv.URL, Token: "stack-op", HTTP: srv.Client()}
		post("after-the-step-2", t0.Add(time.Hour), 1<<6)
		// Restarted, the stack takes its floor from what it stored (5:00 or
		// 5:01), and says so on /metrics.
		if n, d := metricValue(t, srv, "stackbill_usage_clock_behind_batches_total"), metricValue(t, srv, "stackbill_usage_clock_behind_seconds"); n != 1 || d < 2*3600+59*60 || d > 3*3600 {
			t.Fatalf("after a restart with the clock behind, /metrics says %v batches, %v s behind; want 1 and about 3 hours", n, d)
		}
		clk.Set(t0.Add(5*time.Hour + 2*time.Minute))
		post("caught-up", t0.Add(5*time.Hour), 1<<7)
		if n, d := stack.Usage.ClockBehind(); n != 1 || d != 0 {
			t.Fatalf("after the clock caught up intake says %d batches, %v behind; want 1 and 0", n, d)
		}
		clk.Set(t0.Add(9*time.Hour + bridge.Grace))
		if n := forwardAll(t, stack); n != 3 {
			t.Fatalf("after the clock stepped back the stack forwarded %d records, want 3", n)
		}
		if err := com.app.Ledger.Settle(ctx); err != nil {
			t.Fatal(err)
		}
		if got := ledgerTotal(t, com.app, []string{W.ContosoDefault}, t0, t0.Add(24*time.Hour)); got != fmt.Sprint(want) {
			t.Fatalf("commerce holds %s, want %d (each power of two once)", got, want)
		}
	})
}

// metricValue reads one unlabelled series from a server's /metrics.
func metricValue(t *testing.T, srv *httptest.Server, name string) float64 {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), "GET", srv.URL+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer stack-op")
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /metrics: %d, %v", resp.StatusCode, err)
	}
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return f
		}
	}
	t.Fatalf("/metrics has no %s", name)
	return 0
}

// forwardAll steps a stack's forwarder until it has nothing left to send,
// failing the test on any error, and returns the records sent.
func forwardAll(t *testing.T, stack *App) int {
	t.Helper()
	sent := 0
	for range 1000 {
		n, err := stack.Forwarder.Step(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return sent
		}
		sent += n
	}
	t.Fatal("the forwarder did not finish")
	return 0
}

// ledgerTotal is the quantity commerce holds for the charged subscriptions
// over [from, to), summed over meters.
func ledgerTotal(t *testing.T, com *App, charged []string, from, to time.Time) string {
	t.Helper()
	totals, err := com.Ledger.Totals(t.Context(), charged, from, to)
	if err != nil {
		t.Fatal(err)
	}
	got := money.Zero
	for _, tt := range totals {
		got = got.Add(tt.Quantity)
	}
	return got.String()
}
