package cli

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stackbill/stackbill/internal/audit"
	"github.com/stackbill/stackbill/internal/auth"
	"github.com/stackbill/stackbill/internal/billing"
	"github.com/stackbill/stackbill/internal/bridge"
	"github.com/stackbill/stackbill/internal/money"
	"github.com/stackbill/stackbill/internal/registration"
	"github.com/stackbill/stackbill/internal/store"
	"github.com/stackbill/stackbill/internal/store/storetest"
)

// TestAuditLog proves that every kind of audited change writes a record in
// its own transaction, that the chain verifies, that tampering with a record
// or removing one is detected, and that partners read only their scope.
func TestAuditLog(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, backend string) {
		e := newTestEnv(t, backend)
		ctx := t.Context()
		op := auth.Principal{Role: auth.RoleOperator, TokenID: "t"}
		contoso := auth.Principal{Role: auth.RolePartner, PartnerID: "contoso", TokenID: "c"}
		log := audit.NewLog(e.app.DB)
		e.createRegistration(W.ContosoDefault, "azurestack", "contoso-stamp", registration.PayAsYouUse, true)
		e.createRegistration(W.FabrikamDefault, "azurestack", "fabrikam-stamp", registration.PayAsYouUse, true)
		if _, err := e.app.Registrations.PutCustomerSubscription(ctx, contoso, regKey(W.ContosoDefault, "azurestack", "contoso-stamp"), W.Adatum.Subscription, W.Adatum.Tenant, registration.Precondition{}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.app.Registrations.DeleteCustomerSubscription(ctx, contoso, regKey(W.ContosoDefault, "azurestack", "contoso-stamp"), W.Adatum.Subscription, registration.Precondition{}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.app.Billing.ImportPriceList(ctx, op, "test", []byte(testPriceListUSD), time.Time{}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.app.Billing.PutPriceBook(ctx, contoso, billing.PriceBook{Owner: "contoso", Target: billing.DefaultTarget, MarkupPercent: money.FromInt(10)}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.app.Billing.PutPriceBook(ctx, contoso, billing.PriceBook{Owner: "contoso", Target: billing.DefaultTarget, MarkupPercent: money.FromInt(12)}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.app.Billing.SetAgreement(ctx, op, billing.Agreement{PartnerID: "fabrikam", Currency: "EUR"}); err != nil {
			t.Fatal(err)
		}
		_, tok, err := e.app.Auth.Create(ctx, auth.RolePartner, "contoso", "", "audited", 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := e.app.Auth.Revoke(ctx, tok.ID); err != nil {
			t.Fatal(err)
		}
		// A refused change leaves no record.
		before, _ := log.Count(ctx)
		if _, err := e.app.Registrations.PutCustomerSubscription(ctx, contoso, regKey(W.ContosoDefault, "azurestack", "contoso-stamp"), W.Proseware.Subscription, W.Proseware.Tenant, registration.Precondition{}); err == nil {
			t.Fatal("registering another CSP's customer succeeded")
		}
		if after, _ := log.Count(ctx); after != before {
			t.Fatalf("a refused change wrote %d audit records", after-before)
		}

		all, err := log.List(ctx, audit.Query{})
		if err != nil {
			t.Fatal(err)
		}
		actions := map[string]bool{}
		for _, r := range all {
			actions[r.Action] = true
		}
		for _, want := range []string{"partner.created", "customer.created", "subscription.created", "registration.created", "registration.approved",
			"tenantMapping.added", "tenantMapping.removed", "priceList.import", "priceBook.put", "agreement.put", "token.create", "token.revoke"} {
			if !actions[want] {
				t.Errorf("no %s record among %v", want, keys(actions))
			}
		}
		// Before is the entity's previous After: the second price book
		// record starts from the first's markup.
		var books []audit.Entry
		for _, r := range all {
			if r.Kind == "priceBook" {
				books = append(books, r)
			}
		}
		if len(books) != 2 || !strings.Contains(string(books[1].Before), `"markupPercent":10`) || !strings.Contains(string(books[1].After), `"markupPercent":12`) {
			t.Fatalf("price book records: %+v", books)
		}
		for _, r := range all {
			if strings.Contains(string(r.After), "sbk_") {
				t.Fatalf("a token secret reached the audit log: %s", r.After)
			}
		}
		verifier := bridge.CheckpointVerifier(mustKeys(t, e))
		rep, err := log.Verify(ctx, nil, verifier)
		if err != nil || rep.Records != int64(len(all)) {
			t.Fatalf("verify: %d of %d records, %v", rep.Records, len(all), err)
		}

		// Partners read their own scope over the API, resellers theirs.
		for _, c := range []struct {
			partner string
			allowed map[string]bool
		}{
			{"contoso", map[string]bool{"contoso": true}},
			{"fabrikam", map[string]bool{"fabrikam": true, "tailspin": true, "wingtip": true}},
			{"tailspin", map[string]bool{"tailspin": true}},
		} {
			resp, body := e.raw("GET", "/v1/audit?limit=1000", e.tokens[c.partner], "", nil)
			var page struct {
				Value []audit.Entry `json:"value"`
			}
			if resp.StatusCode != 200 || json.Unmarshal([]byte(body), &page) != nil || len(page.Value) == 0 {
				t.Fatalf("%s reads the audit log: %d %.200s", c.partner, resp.StatusCode, body)
			}
			for _, r := range page.Value {
				if !c.allowed[r.Scope] {
					t.Errorf("%s sees record %d (%s) of scope %q", c.partner, r.Seq, r.Action, r.Scope)
				}
			}
		}
		if resp, _ := e.raw("GET", "/v1/audit", e.operator, "", nil); resp.StatusCode != 200 {
			t.Fatalf("operator reads the audit log: %d", resp.StatusCode)
		}

		// Tampering: an edited record, then a record removed from the end.
		if _, err := tamperExec(t, e, `UPDATE audit_log SET actor = 'someone else' WHERE seq = 3`); err != nil {
			t.Fatal(err)
		}
		var broken *audit.Broken
		if rep, err := log.Verify(ctx, nil, verifier); !errors.As(err, &broken) || broken.Seq != 3 || rep.Records != 2 {
			t.Fatalf("after editing record 3: %d verified, %v", rep.Records, err)
		}
		if backend == "sqlite" {
			res := runCLI(t, nil, "audit", "verify", "--db", e.dsn)
			if res.code == 0 || !strings.Contains(res.stdout, "TAMPERED") {
				t.Fatalf("stackbill audit verify on a tampered log: %d %s %s", res.code, res.stdout, res.stderr)
			}
		}
		if _, err := tamperExec(t, e, `UPDATE audit_log SET actor = ? WHERE seq = 3`, all[2].Actor); err != nil {
			t.Fatal(err)
		}
		if _, err := log.Verify(ctx, nil, verifier); err != nil {
			t.Fatalf("restored record: %v", err)
		}

		// The hashes alone cannot see an attacker who edits a record and
		// recomputes every hash after it, or cuts records off the end and
		// moves the head back: the chain is consistent again. Commerce's
		// signed checkpoint of the head can.
		if wrote, err := audit.Checkpoint(ctx, e.app.DB, e.app.Signer, e.app.Clock.Now()); err != nil || !wrote {
			t.Fatalf("checkpoint: %v %v", wrote, err)
		}
		if rep, err := log.Verify(ctx, nil, verifier); err != nil || rep.Checkpoints != 1 || rep.LastCheckpoint != int64(len(all)) {
			t.Fatalf("verify with a checkpoint: %+v %v", rep, err)
		}
		recomputeFrom(t, e, 3, func(r *audit.Entry) { r.Actor = "someone else" })
		if _, err := log.Verify(ctx, nil, nil); err != nil {
			t.Fatalf("a recomputed chain is consistent by its hashes alone, but verify says %v", err)
		}
		if _, err := log.Verify(ctx, nil, verifier); !errors.As(err, &broken) || !strings.Contains(broken.Reason, "recomputed") {
			t.Fatalf("a recomputed chain passed its checkpoint: %v", err)
		}
		recomputeFrom(t, e, 3, func(r *audit.Entry) { r.Actor = all[2].Actor })
		if _, err := log.Verify(ctx, nil, verifier); err != nil {
			t.Fatalf("restored chain: %v", err)
		}
		last := all[len(all)-1]
		if _, err := tamperExec(t, e, `DELETE FROM audit_log WHERE seq = ?`, last.Seq); err != nil {
			t.Fatal(err)
		}
		if _, err := log.Verify(ctx, nil, verifier); !errors.As(err, &broken) {
			t.Fatalf("after removing the last record: %v", err)
		}
		if _, err := tamperExec(t, e, `UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1`, last.Seq-1, all[len(all)-2].Hash); err != nil {
			t.Fatal(err)
		}
		if _, err := log.Verify(ctx, nil, nil); err != nil {
			t.Fatalf("a chain cut short with its head moved back is consistent by its hashes alone, but verify says %v", err)
		}
		if _, err := log.Verify(ctx, nil, verifier); !errors.As(err, &broken) || !strings.Contains(broken.Reason, "cut from the end") {
			t.Fatalf("a truncated chain passed its checkpoint: %v", err)
		}
		// A forged checkpoint (another key) is refused.
		if _, err := tamperExec(t, e, `UPDATE audit_checkpoints SET signature = ?`, "AAAA"); err != nil {
			t.Fatal(err)
		}
		if _, err := log.Verify(ctx, nil, verifier); !errors.As(err, &broken) || !strings.Contains(broken.Reason, "not signed") {
			t.Fatalf("a forged checkpoint passed: %v", err)
		}
	})
}

func mustKeys(t *testing.T, e *testEnv) bridge.JWKS {
	t.Helper()
	if _, err := e.app.Signer.JWKS(context.Background()); err != nil {
		t.Fatal(err)
	}
	k, ok, err := bridge.LocalKeys(context.Background(), e.app.DB)
	if err != nil || !ok {
		t.Fatalf("commerce's keys: %v %v", ok, err)
	}
	return k
}

// recomputeFrom edits the records from seq on with edit and recomputes
// their hashes and the head, as an attacker with write access would: the
// hash is SHA-256 over the predecessor's hash and the length-prefixed
// fields, which anyone can read in the source.
func recomputeFrom(t *testing.T, e *testEnv, seq int64, edit func(*audit.Entry)) {
	t.Helper()
	ctx := t.Context()
	recs, err := audit.List(ctx, e.app.DB, audit.Query{After: seq - 1})
	if err != nil {
		t.Fatal(err)
	}
	prev := ""
	if seq > 1 {
		before, err := audit.List(ctx, e.app.DB, audit.Query{After: seq - 2, Limit: 1})
		if err != nil {
			t.Fatal(err)
		}
		prev = before[0].Hash
	}
	for i := range recs {
		r := &recs[i]
		if i == 0 {
			edit(r)
		}
		h := sha256.New()
		for _, f := range []string{prev, strconv.FormatInt(r.Seq, 10), strconv.FormatInt(r.At.UnixMicro(), 10), r.Actor, r.Action, r.Kind, r.ID, r.Scope, string(r.Before), string(r.After)} {
			fmt.Fprintf(h, "%d:%s;", len(f), f)
		}
		r.PrevHash, r.Hash = prev, hex.EncodeToString(h.Sum(nil))
		prev = r.Hash
		if _, err := tamperExec(t, e, `UPDATE audit_log SET actor = ?, prev_hash = ?, hash = ? WHERE seq = ?`, r.Actor, r.PrevHash, r.Hash, r.Seq); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := tamperExec(t, e, `UPDATE audit_head SET hash = ? WHERE id = 1`, prev); err != nil {
		t.Fatal(err)
	}
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// tamperExec changes the database behind stackbill's back, as an attacker
// with database access would.
func tamperExec(t *testing.T, e *testEnv, q string, args ...any) (any, error) {
	t.Helper()
	return nil, e.app.DB.Write(context.Background(), func(tx *store.Tx) error {
		_, err := tx.ExecContext(context.Background(), q, args...)
		return err
	})
}

// TestEveryServingProcessSealsTheAudit: a stack serving alone audits its
// tenancy changes too, and seals them into the chain without waiting for
// someone to read the log.
func TestEveryServingProcessSealsTheAudit(t *testing.T) {
	t.Parallel()
	for _, role := range []string{"stack", "commerce"} {
		t.Run(role, func(t *testing.T) {
			t.Parallel()
			dsn := filepath.Join(t.TempDir(), "s.db")
			startServe(t, map[string]string{"STACKBILL_OPERATOR_TOKEN": "op"}, "--role", role, "--db", dsn)
			db, err := store.Open(t.Context(), dsn, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if err := db.Write(t.Context(), func(tx *store.Tx) error {
				return audit.Append(t.Context(), tx, audit.Entry{At: time.Now(), Actor: "test", Action: "thing.put", Kind: "thing", ID: "x", After: audit.JSON(1)})
			}); err != nil {
				t.Fatal(err)
			}
			// Polled through the table, not through audit.List, which
			// would seal it itself.
			for i := 0; ; i++ {
				var pending int
				if err := db.QueryRowContext(t.Context(), `SELECT COUNT(*) FROM audit_pending`).Scan(&pending); err != nil {
					t.Fatal(err)
				}
				if pending == 0 {
					break
				}
				if i == 600 {
					t.Fatalf("a %s process left an audit record unsealed for a minute", role)
				}
				time.Sleep(100 * time.Millisecond)
			}
		})
	}
}
