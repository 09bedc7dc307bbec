package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/stackbill/stackbill/internal/auth"
	"github.com/stackbill/stackbill/internal/clock"
	"github.com/stackbill/stackbill/internal/e2e"
	"github.com/stackbill/stackbill/internal/notify"
	"github.com/stackbill/stackbill/internal/registration"
	"github.com/stackbill/stackbill/internal/store"
	"github.com/stackbill/stackbill/internal/store/storetest"
)

// hooked runs a test instance on clk, sending webhooks to loopback
// receivers.
func hooked(clk *clock.Clock) func(*Options) {
	return func(o *Options) {
		o.Clock = clk
		o.Webhooks = notify.Policy{AllowLoopback: true}
	}
}

// verifyStandardWebhook checks a delivery with the Standard Webhooks
// project's own Go library, which shares no code with the sender: the
// signature over "id.timestamp.body" with the secret's key, and a
// timestamp within its five minutes of now.
func verifyStandardWebhook(secret string, h http.Header, body []byte) error {
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		return err
	}
	return wh.Verify(body, h)
}

// receiver is a webhook receiver on loopback whose answers a test scripts:
// each request takes the next behaviour ("500", "hang", "drop", "200"),
// and the last one repeats.
type receiver struct {
	srv    *httptest.Server
	mu     sync.Mutex
	script []string
	got    []received
}

type received struct {
	header http.Header
	body   []byte
}

// acceptingEndpoint is a receiver that accepts every delivery, and p's
// endpoint at its URL (plus path).
func acceptingEndpoint(t *testing.T, e *testEnv, p auth.Principal, path string) (*receiver, notify.Endpoint) {
	t.Helper()
	rc := newReceiver(t, "200")
	url := rc.srv.URL + path
	ep, err := e.app.Notify.CreateEndpoint(t.Context(), p, notify.EndpointInput{URL: &url})
	if err != nil {
		t.Fatal(err)
	}
	return rc, ep
}

func newReceiver(t *testing.T, script ...string) *receiver {
	rc := &receiver{script: script}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		rc.got = append(rc.got, received{r.Header.Clone(), body})
		act := rc.script[min(len(rc.got), len(rc.script))-1]
		rc.mu.Unlock()
		switch act {
		case "hang":
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
		case "drop":
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
		case "500":
			http.Error(w, "receiver is down", http.StatusInternalServerError)
		default:
			w.WriteHeader(http.StatusNoContent)
		}
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) requests() []received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]received{}, rc.got...)
}

// TestWebhooksDeliverSignedEventsThroughFailures: a partner's endpoint gets
// the approval of its registration, signed as Standard Webhooks specifies
// (checked by an independent verifier), through a receiver that answers
// 500, hangs past the sender's timeout and drops the connection before it
// accepts; every attempt carries the same webhook-id and is in the
// delivery log. A replay sends it again under that id; a receiver that
// never accepts is given up after the schedule, once; another partner's
// endpoint gets nothing.
func TestWebhooksDeliverSignedEventsThroughFailures(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, backend string) {
		ctx := t.Context()
		clk := clock.Manual(time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC))
		e := newTestEnv(t, backend, func(o *Options) {
			o.Clock = clk
			o.Webhooks = notify.Policy{AllowLoopback: true}
			o.WebhookSender = notify.SenderOptions{Timeout: 300 * time.Millisecond, Schedule: []time.Duration{time.Minute, time.Minute, time.Minute}}
		})
		flaky := newReceiver(t, "500", "hang", "drop", "200")
		down := newReceiver(t, "500")
		other := newReceiver(t, "200")
		create := func(token, url string, types string) notify.Endpoint {
			t.Helper()
			resp, body := e.raw("POST", "/v1/webhooks", token, "application/json", strings.NewReader(`{"url":"`+url+`","types":`+types+`}`))
			var ep notify.Endpoint
			if resp.StatusCode != 201 || json.Unmarshal([]byte(body), &ep) != nil || !strings.HasPrefix(ep.Secret, "whsec_") {
				t.Fatalf("create endpoint: %d %s", resp.StatusCode, body)
			}
			return ep
		}
		flakyEP := create(e.tokens["contoso"], flaky.srv.URL+"/hooks", `["registration.approved"]`)
		downEP := create(e.tokens["contoso"], down.srv.URL+"/hooks", `["*"]`)
		create(e.tokens["fabrikam"], other.srv.URL+"/hooks", `["*"]`)
		// The secret is shown once.
		if resp, body := e.raw("GET", "/v1/webhooks/"+flakyEP.ID, e.tokens["contoso"], "", nil); resp.StatusCode != 200 || strings.Contains(body, "whsec_") {
			t.Fatalf("GET endpoint: %d %s", resp.StatusCode, body)
		}

		e.createRegistration(W.ContosoDefault, "azurestack", "hooked", registration.PayAsYouUse, true)
		for range 6 {
			if _, err := e.app.Notify.Step(ctx); err != nil {
				t.Fatal(err)
			}
			clk.Advance(2 * time.Minute) // past each wait, jitter included
		}
		got := flaky.requests()
		if len(got) != 4 {
			t.Fatalf("the flaky receiver got %d requests, want 4 (500, hang, drop, accepted)", len(got))
		}
		id := got[0].header.Get("webhook-id")
		for i, r := range got {
			if err := verifyStandardWebhook(flakyEP.Secret, r.header, r.body); err != nil {
				t.Fatalf("attempt %d: %v", i+1, err)
			}
			if r.header.Get("webhook-id") != id {
				t.Fatalf("attempt %d carries webhook-id %s, the first %s", i+1, r.header.Get("webhook-id"), id)
			}
		}
		var msg struct {
			Type      string
			Timestamp time.Time
			Data      struct{ Registration, CloudID string }
		}
		if err := json.Unmarshal(got[3].body, &msg); err != nil || msg.Type != notify.RegistrationApproved || !strings.HasSuffix(msg.Data.Registration, "/registrations/hooked") || msg.Data.CloudID == "" {
			t.Fatalf("delivered %s (%v)", got[3].body, err)
		}
		// A signature over other bytes does not verify.
		if verifyStandardWebhook(flakyEP.Secret, got[3].header, append(got[3].body, ' ')) == nil {
			t.Fatal("the verifier accepts a changed body")
		}

		// The delivery log, as the partner reads it.
		var ds struct{ Value []notify.Delivery }
		if resp, body := e.raw("GET", "/v1/webhooks/"+flakyEP.ID+"/deliveries", e.tokens["contoso"], "", nil); resp.StatusCode != 200 || json.Unmarshal([]byte(body), &ds) != nil || len(ds.Value) != 1 {
			t.Fatalf("deliveries: %d %s", resp.StatusCode, body)
		}
		var d notify.Delivery
		path := fmt.Sprintf("/v1/webhooks/%s/deliveries/%d", flakyEP.ID, ds.Value[0].ID)
		if resp, body := e.raw("GET", path, e.tokens["contoso"], "", nil); resp.StatusCode != 200 || json.Unmarshal([]byte(body), &d) != nil {
			t.Fatalf("delivery: %d %s", resp.StatusCode, body)
		}
		if d.State != "succeeded" || d.Attempts != 4 || len(d.Log) != 4 || d.EventID != id ||
			d.Log[0].Status != 500 || !strings.Contains(d.Log[0].Response, "receiver is down") ||
			d.Log[1].Status != 0 || d.Log[1].Error == "" || d.Log[2].Status != 0 || d.Log[2].Error == "" || d.Log[3].Status != 204 {
			t.Fatalf("delivery log: %+v", d)
		}

		// Replay: the same message again, attempt 5.
		if resp, body := e.raw("POST", path+"/replay", e.tokens["contoso"], "", nil); resp.StatusCode != 202 {
			t.Fatalf("replay: %d %s", resp.StatusCode, body)
		}
		if _, err := e.app.Notify.Step(ctx); err != nil {
			t.Fatal(err)
		}
		if got := flaky.requests(); len(got) != 5 || got[4].header.Get("webhook-id") != id || verifyStandardWebhook(flakyEP.Secret, got[4].header, got[4].body) != nil {
			t.Fatalf("after the replay the receiver has %d requests", len(got))
		}

		// The receiver that never accepts: the first attempt and three
		// retries, then given up; no further attempt however long we wait.
		clk.Advance(time.Hour)
		for range 3 {
			if _, err := e.app.Notify.Step(ctx); err != nil {
				t.Fatal(err)
			}
			clk.Advance(time.Hour)
		}
		if n := len(down.requests()); n != 4 {
			t.Fatalf("the receiver that is down got %d attempts, want 4", n)
		}
		if ok, failed, gone := e.app.Notify.Counters(); ok != 2 || failed != 3+4 || gone != 1 {
			t.Fatalf("sender counters: %d succeeded, %d attempts failed, %d given up; want 2, 7, 1", ok, failed, gone)
		}
		if resp, body := e.raw("GET", "/v1/webhooks/"+downEP.ID+"/deliveries", e.tokens["contoso"], "", nil); resp.StatusCode != 200 || !strings.Contains(body, `"state":"failed"`) {
			t.Fatalf("given-up delivery: %d %s", resp.StatusCode, body)
		}
		// Fabrikam's endpoint takes every type, and heard nothing of
		// Contoso's registration; Fabrikam's event list has none of it.
		if n := len(other.requests()); n != 0 {
			t.Fatalf("another partner's endpoint got %d deliveries", n)
		}
		if resp, body := e.raw("GET", "/v1/events", e.tokens["fabrikam"], "", nil); resp.StatusCode != 200 || strings.Contains(body, "hooked") {
			t.Fatalf("fabrikam's events: %d %s", resp.StatusCode, body)
		}
		if resp, body := e.raw("GET", "/v1/events?type=registration.approved", e.tokens["contoso"], "", nil); resp.StatusCode != 200 || !strings.Contains(body, "/registrations/hooked") {
			t.Fatalf("contoso's events: %d %s", resp.StatusCode, body)
		}
	})
}

// TestWebhookSenderSurvivesKill9: the serving process is killed with
// SIGKILL right after a receiver accepted a delivery and before the sender
// recorded it (fail point webhook-sent), holding the leases of what it
// claimed. Restarted, it sends what it had not recorded once the leases
// run out, under the same webhook-ids: every event reaches the receiver,
// no event is lost, a repeat is recognisable by its id, and each delivery
// ends succeeded with one recorded attempt.
func TestWebhookSenderSurvivesKill9(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds and kills processes")
	}
	bin := e2e.BuildBinary(t, "../..")
	storetest.Each(t, func(t *testing.T, backend string) {
		start := time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC)
		e := newTestEnv(t, backend, func(o *Options) {
			o.Clock = clock.Manual(start)
			o.Webhooks = notify.Policy{AllowLoopback: true}
		})
		rc, ep := acceptingEndpoint(t, e, auth.Principal{Role: auth.RoleOperator, TokenID: "t"}, "/hooks")
		const events = 5
		for i := range events {
			e.createRegistration(W.ContosoDefault, "azurestack", fmt.Sprintf("killed-%d", i), registration.PayAsYouUse, true)
		}
		dsn := e.dsn
		e.app.Close()
		// A simulated clock at 60x: the 2-minute lease runs out in 2 s.
		args := []string{"--webhooks-allow-loopback", "--clock-start", start.Format(time.RFC3339), "--clock-rate", "60", "--auto-finalize=false"}
		p := serveProc(t, bin, dsn, "op-hooks", "webhook-sent", args...)
		p.Launch() // it may die at the fail point before it serves
		if err := p.WaitKilled(60 * time.Second); err != nil {
			t.Fatal(err)
		}
		before := len(rc.requests())
		if before == 0 {
			t.Fatal("killed after a delivery, but the receiver got none")
		}
		// Restarted on the same clock instant: the dead sender's leases
		// hold for a while, then run out.
		p = serveProc(t, bin, dsn, "op-hooks", "", args...)
		p.Start()
		defer p.Kill9()
		// Until every delivery is recorded as succeeded.
		var ds struct{ Value []notify.Delivery }
		for deadline := time.Now().Add(60 * time.Second); ; {
			resp, body := e2e.Call(t, http.DefaultClient, "GET", p.URL+"/v1/webhooks/"+ep.ID+"/deliveries", "op-hooks", "", nil)
			if resp.StatusCode != 200 || json.Unmarshal([]byte(body), &ds) != nil || len(ds.Value) != events {
				t.Fatalf("deliveries: %d %s", resp.StatusCode, body)
			}
			done := 0
			for _, d := range ds.Value {
				if d.State == "succeeded" {
					done++
				}
			}
			if done == events {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("after the restart %d of %d deliveries succeeded: %+v", done, events, ds.Value)
			}
			time.Sleep(100 * time.Millisecond)
		}
		for _, d := range ds.Value {
			if d.Attempts != 1 {
				t.Fatalf("delivery %d: %d attempts recorded, want 1 (the killed one was never recorded)", d.ID, d.Attempts)
			}
		}
		seen := map[string]int{}
		for _, r := range rc.requests() {
			if err := verifyStandardWebhook(ep.Secret, r.header, r.body); err != nil {
				t.Fatal(err)
			}
			seen[r.header.Get("webhook-id")]++
		}
		if len(seen) != events {
			t.Fatalf("the receiver has %d distinct events, want %d", len(seen), events)
		}
		repeats := len(rc.requests()) - events
		t.Logf("killed after %d requests; after the restart %d events delivered, %d repeated (same webhook-id)", before, len(seen), repeats)
		if repeats < 1 {
			t.Fatal("the delivery the killed sender sent but never recorded was not sent again")
		}
	})
}

// TestWebhookCLI: a partner keeps an endpoint and reads its deliveries
// with the CLI alone: create (the secret printed once), list, update,
// show, deliveries, one delivery's log, replay, events, delete.
func TestWebhookCLI(t *testing.T) {
	t.Parallel()
	clk := clock.Manual(time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC))
	e := newTestEnv(t, "sqlite", hooked(clk))
	rc := newReceiver(t, "500", "200")
	env, run := cliAs(t, e.url, e.tokens["contoso"])
	var ep notify.Endpoint
	if err := json.Unmarshal([]byte(run("webhook", "create", "--endpoint", rc.srv.URL+"/in", "--types", "registration.approved", "-o", "json")), &ep); err != nil || !strings.HasPrefix(ep.Secret, "whsec_") {
		t.Fatalf("create: %+v %v", ep, err)
	}
	if out := run("webhook", "list"); !strings.Contains(out, ep.ID) || !strings.Contains(out, "registration.approved") || strings.Contains(out, "whsec_") {
		t.Fatalf("list:\n%s", out)
	}
	if out := run("webhook", "update", ep.ID, "--description", "finance", "--types", "*"); !strings.Contains(out, "finance") || !strings.Contains(out, "*") {
		t.Fatalf("update:\n%s", out)
	}
	if r := runCLI(t, env, "webhook", "create", "--endpoint", "https://10.0.0.1/x"); r.code == 0 || !strings.Contains(r.stderr, "not a public address") {
		t.Fatalf("an inside address: exit %d %s", r.code, r.stderr)
	}
	e.createRegistration(W.ContosoDefault, "azurestack", "cli-hooked", registration.PayAsYouUse, true)
	if _, err := e.app.Notify.Step(t.Context()); err != nil {
		t.Fatal(err)
	}
	out := run("webhook", "deliveries", ep.ID, "-o", "csv")
	recs := strings.Split(strings.TrimSpace(out), "\n")
	if len(recs) != 2 || !strings.Contains(recs[1], "pending") || !strings.Contains(recs[1], "500") {
		t.Fatalf("deliveries after a 500:\n%s", out)
	}
	id := strings.Split(recs[1], ",")[0]
	if out := run("webhook", "replay", ep.ID, id); !strings.Contains(out, "pending") {
		t.Fatalf("replay:\n%s", out)
	}
	if _, err := e.app.Notify.Step(t.Context()); err != nil {
		t.Fatal(err)
	}
	if out := run("webhook", "delivery", ep.ID, id); !strings.Contains(out, "succeeded") || !strings.Contains(out, "attempt 1") || !strings.Contains(out, "attempt 2") {
		t.Fatalf("delivery:\n%s", out)
	}
	// An event queued for the endpoint, then the endpoint disabled: it is
	// not sent, and an event meanwhile is not queued for it; enabled
	// again, what was queued is sent.
	before := len(rc.requests())
	e.createRegistration(W.ContosoDefault, "azurestack", "cli-hooked-2", registration.PayAsYouUse, true)
	if out := run("webhook", "update", ep.ID, "--disable"); !strings.Contains(out, "false") {
		t.Fatalf("disable:\n%s", out)
	}
	e.createRegistration(W.ContosoDefault, "azurestack", "cli-hooked-3", registration.PayAsYouUse, true)
	if n, err := e.app.Notify.Step(t.Context()); err != nil || n != 0 || len(rc.requests()) != before {
		t.Fatalf("a disabled endpoint: %d attempts (%v), %d requests", n, err, len(rc.requests())-before)
	}
	run("webhook", "update", ep.ID, "--enable")
	if _, err := e.app.Notify.Step(t.Context()); err != nil || len(rc.requests()) != before+1 || !strings.Contains(string(rc.requests()[before].body), "cli-hooked-2") {
		t.Fatalf("enabled again: %d requests more (%v)", len(rc.requests())-before, err)
	}
	out = run("events", "list", "--type", "registration.approved")
	if !strings.Contains(out, "/registrations/cli-hooked") {
		t.Fatalf("events list:\n%s", out)
	}
	if out := run("webhook", "delete", ep.ID); !strings.Contains(out, "deleted") {
		t.Fatalf("delete:\n%s", out)
	}
	if r := runCLI(t, env, "webhook", "show", ep.ID); r.code == 0 || !strings.Contains(r.stderr, "WebhookNotFound") {
		t.Fatalf("show after delete: exit %d %s", r.code, r.stderr)
	}
}

// TestTwoSendersDeliverEachEventOnce: two commerce instances on one
// database send the same outbox at once; every delivery reaches the
// receiver exactly once (no lease is lost while held, so no repeat), and
// each is recorded once.
func TestTwoSendersDeliverEachEventOnce(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, backend string) {
		ctx := t.Context()
		clk := clock.Manual(time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC))
		opts := func(o *Options) {
			o.Clock = clk
			o.Webhooks = notify.Policy{AllowLoopback: true}
			o.WebhookSender = notify.SenderOptions{Batch: 7, Concurrency: 3}
		}
		e := newTestEnv(t, backend, opts)
		o := Options{DB: e.dsn, Logger: e.app.Logger}
		opts(&o)
		second := buildApp(t, o)
		op := auth.Principal{Role: auth.RoleOperator, TokenID: "t"}
		rc, ep := acceptingEndpoint(t, e, op, "")
		const events = 60
		for i := range events {
			if err := e.app.DB.Write(ctx, func(tx *store.Tx) error {
				_, err := notify.Record(ctx, tx, notify.Event{Type: notify.QuarantineAdded, At: clk.Now(), Subject: fmt.Sprintf("test/%d", i)})
				return err
			}); err != nil {
				t.Fatal(err)
			}
		}
		var wg sync.WaitGroup
		for _, app := range []*App{e.app, second} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					n, err := app.Notify.Step(ctx)
					if err != nil {
						t.Error(err)
						return
					}
					if n == 0 {
						return
					}
				}
			}()
		}
		wg.Wait()
		seen := map[string]int{}
		for _, r := range rc.requests() {
			seen[r.header.Get("webhook-id")]++
		}
		if len(seen) != events || len(rc.requests()) != events {
			t.Fatalf("%d requests for %d distinct events, want %d each once", len(rc.requests()), len(seen), events)
		}
		ds, err := e.app.Notify.Deliveries(ctx, op, ep.ID, 0, 500)
		if err != nil || len(ds) != events {
			t.Fatalf("%d deliveries (%v)", len(ds), err)
		}
		for _, d := range ds {
			if d.State != "succeeded" || d.Attempts != 1 {
				t.Fatalf("delivery %d: %s after %d attempts", d.ID, d.State, d.Attempts)
			}
		}
		a1, _, _ := e.app.Notify.Counters()
		a2, _, _ := second.Notify.Counters()
		t.Logf("first instance sent %d, second %d", a1, a2)
	})
}

// TestEventsArePurgedAfterTheirRetention: events past notify.Retention go
// with their deliveries and attempts; newer ones, and a delivery still
// pending, stay.
func TestEventsArePurgedAfterTheirRetention(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, backend string) {
		ctx := t.Context()
		clk := clock.Manual(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
		e := newTestEnv(t, backend, hooked(clk))
		op := auth.Principal{Role: auth.RoleOperator, TokenID: "t"}
		_, ep := acceptingEndpoint(t, e, op, "")
		record := func(subject string) {
			t.Helper()
			if err := e.app.DB.Write(ctx, func(tx *store.Tx) error {
				_, err := notify.Record(ctx, tx, notify.Event{Type: notify.QuarantineAdded, At: clk.Now(), Subject: subject})
				return err
			}); err != nil {
				t.Fatal(err)
			}
		}
		record("old")
		if _, err := e.app.Notify.Step(ctx); err != nil {
			t.Fatal(err)
		}
		clk.Advance(notify.Retention + time.Hour)
		record("new")
		if n, err := e.app.Notify.Purge(ctx, clk.Now().Add(-notify.Retention)); err != nil || n != 1 {
			t.Fatalf("purged %d events (%v), want the old one", n, err)
		}
		evs, err := e.app.Notify.Events(ctx, op, notify.EventQuery{Limit: 10})
		if err != nil || len(evs) != 1 || evs[0].Subject != "new" {
			t.Fatalf("left: %+v %v", evs, err)
		}
		ds, err := e.app.Notify.Deliveries(ctx, op, ep.ID, 0, 10)
		if err != nil || len(ds) != 1 || ds[0].State != "pending" {
			t.Fatalf("deliveries left: %+v %v", ds, err)
		}
	})
}

// TestPortalBudgetsAndWebhooks: a partner makes a budget and an endpoint
// in the portal, sees the endpoint's secret once, and replays a delivery;
// a form without its CSRF field changes nothing, and an inside address is
// refused there as in the API.
func TestPortalBudgetsAndWebhooks(t *testing.T) {
	t.Parallel()
	clk := clock.Manual(time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC))
	e := newTestEnv(t, "sqlite", hooked(clk))
	rc := newReceiver(t, "200")
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar}
	if resp := postLogin(t, browser, e.url, url.Values{"token": {e.tokens["contoso"]}}); resp.StatusCode != 200 {
		t.Fatalf("sign in: %d", resp.StatusCode)
	}
	csrf := func(page string) string {
		t.Helper()
		_, body := e2e.Call(t, browser, "GET", e.url+page, "", "", nil)
		m := csrfField.FindStringSubmatch(body)
		if m == nil {
			t.Fatalf("%s has no form", page)
		}
		return m[1]
	}
	post := func(path string, form url.Values) (int, string) {
		t.Helper()
		resp, err := browser.PostForm(e.url+path, form)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	budget := url.Values{"name": {"From the portal"}, "amount": {"250"}, "currency": {"USD"}, "scopeKind": {"customer"}, "scopeId": {W.Adatum.Tenant}, "thresholds": {"50,100f"}, "disable": {"on"}}
	if code, _ := post("/portal/budgets", budget); code != 403 {
		t.Fatalf("a budget form without CSRF: %d", code)
	}
	budget.Set("csrf", csrf("/portal/budgets"))
	if code, body := post("/portal/budgets", budget); code != 200 || !strings.Contains(body, "From the portal") {
		t.Fatalf("create a budget in the portal: %d %.500s", code, body)
	}
	bs, err := e.app.Budgets.List(t.Context(), auth.Principal{Role: auth.RolePartner, PartnerID: "contoso", TokenID: "t"})
	if err != nil || len(bs) != 1 || bs[0].Action != "disable" || len(bs[0].Thresholds) != 2 || bs[0].Scope.ID != W.Adatum.Tenant {
		t.Fatalf("budgets: %+v %v", bs, err)
	}
	tok := csrf("/portal/webhooks")
	if code, body := post("/portal/webhooks", url.Values{"csrf": {tok}, "url": {"https://169.254.169.254/"}}); code != 400 || !strings.Contains(body, "not a public address") {
		t.Fatalf("an inside address in the portal: %d %.300s", code, body)
	}
	code, body := post("/portal/webhooks", url.Values{"csrf": {tok}, "url": {rc.srv.URL + "/portal-hook"}, "types": {"registration.approved"}})
	if code != 200 || !strings.Contains(body, "whsec_") {
		t.Fatalf("create an endpoint in the portal: %d %.300s", code, body)
	}
	if _, again := e2e.Call(t, browser, "GET", e.url+"/portal/webhooks", "", "", nil); strings.Contains(again, "whsec_") || !strings.Contains(again, "/portal-hook") {
		t.Fatal("the webhooks page shows the secret again, or not the endpoint")
	}
	e.createRegistration(W.ContosoDefault, "azurestack", "portal-hooked", registration.PayAsYouUse, true)
	if _, err := e.app.Notify.Step(t.Context()); err != nil {
		t.Fatal(err)
	}
	_, page := e2e.Call(t, browser, "GET", e.url+"/portal/webhooks", "", "", nil)
	m := regexp.MustCompile(`action="(/portal/webhooks/[^"]+/replay)"`).FindStringSubmatch(page)
	if m == nil || !strings.Contains(page, "succeeded") {
		t.Fatalf("the webhooks page lists no delivery:\n%.2000s", page)
	}
	if code, _ := post(m[1], url.Values{"csrf": {csrf("/portal/webhooks")}}); code != 200 {
		t.Fatalf("replay: %d", code)
	}
	if _, err := e.app.Notify.Step(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := rc.requests(); len(got) != 2 || got[0].header.Get("webhook-id") != got[1].header.Get("webhook-id") {
		t.Fatalf("the receiver got %d requests", len(got))
	}
}

// TestWebhookSecretRotation: after a rotation, deliveries carry signatures
// with the new and the previous secret, and a receiver holding either
// accepts them; once the overlap is over, only the new one signs.
func TestWebhookSecretRotation(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, backend string) {
		ctx := t.Context()
		clk := clock.Manual(time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC))
		e := newTestEnv(t, backend, hooked(clk))
		rc, first := acceptingEndpoint(t, e, auth.Principal{Role: auth.RolePartner, PartnerID: "contoso", TokenID: "t"}, "")
		resp, body := e.raw("POST", "/v1/webhooks/"+first.ID+"/rotate-secret", e.tokens["contoso"], "", nil)
		var rotated notify.Endpoint
		if resp.StatusCode != 200 || json.Unmarshal([]byte(body), &rotated) != nil || !strings.HasPrefix(rotated.Secret, "whsec_") || rotated.Secret == first.Secret {
			t.Fatalf("rotate: %d %s", resp.StatusCode, body)
		}
		deliver := func(name string) received {
			t.Helper()
			e.createRegistration(W.ContosoDefault, "azurestack", name, registration.PayAsYouUse, true)
			if _, err := e.app.Notify.Step(ctx); err != nil {
				t.Fatal(err)
			}
			got := rc.requests()
			return got[len(got)-1]
		}
		r := deliver("rotating")
		for _, secret := range []string{first.Secret, rotated.Secret} {
			if err := verifyStandardWebhook(secret, r.header, r.body); err != nil {
				t.Fatalf("during the overlap: %v (%s)", err, r.header.Get("webhook-signature"))
			}
		}
		clk.Advance(notify.RotationOverlap + time.Minute)
		r = deliver("rotated")
		if err := verifyStandardWebhook(rotated.Secret, r.header, r.body); err != nil {
			t.Fatal(err)
		}
		if verifyStandardWebhook(first.Secret, r.header, r.body) == nil {
			t.Fatal("the previous secret still signs after the overlap")
		}
	})
}
