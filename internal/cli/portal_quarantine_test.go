package cli

import (
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/stackbill/stackbill/internal/auth"
	"github.com/stackbill/stackbill/internal/e2e"
	"github.com/stackbill/stackbill/internal/quarantine"
	"github.com/stackbill/stackbill/internal/store"
)

// TestPortalQuarantine: what a stage held back needs attention from whoever
// can act on it. The operator sees commerce's items and resolves them with
// a confirmation; the stack operator sees only the stack's; the partner
// whose stamp's records are held is told, and no other partner is; nobody
// else opens the page or resolves an item.
func TestPortalQuarantine(t *testing.T) {
	t.Parallel()
	pw := newPortalWorld(t, "sqlite", 1)
	ctx := t.Context()
	op := auth.Principal{Role: auth.RoleOperator, TokenID: "t"}
	reg, err := pw.app.Registrations.Get(ctx, op, pw.w.RegKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := pw.app.DB.Write(ctx, func(tx *store.Tx) error {
		return quarantine.Add(ctx, tx, quarantine.Item{At: pw.app.Clock.Now(), Stage: quarantine.Ingest, Key: "portal-test", Reason: "a record no stage could take",
			RegistrationUID: reg.UID, Records: 3, Payload: []byte("not a batch")})
	}); err != nil {
		t.Fatal(err)
	}
	items, err := pw.app.Quarantine.List(ctx, op, quarantine.Query{Open: true})
	if err != nil || len(items) != 1 {
		t.Fatalf("held items: %v %d", err, len(items))
	}
	id := strconv.FormatInt(items[0].ID, 10)
	overview := func(who string) string {
		return pw.get(t, pw.signIn(t, pw.w.SignIn(who)), "/portal/overview")
	}
	if page := overview("operator"); !strings.Contains(page, "held back at the ingest stage") || !strings.Contains(page, `href="/portal/quarantine"`) {
		t.Error("the operator's overview does not say what is held back")
	}
	if page := overview("fabrikam"); !strings.Contains(page, "3 record(s) from stamp "+pw.w.RegKey.Name+" are held") {
		t.Error("Fabrikam is not told that its stamp's records are held")
	}
	for _, who := range []string{"contoso", "tailspin"} {
		if page := overview(who); strings.Contains(page, "held") {
			t.Errorf("%s is told about another partner's held records", who)
		}
	}
	so := pw.signIn(t, pw.w.SignIn("stack-operator"))
	if page := pw.get(t, so, "/portal/quarantine"); strings.Contains(page, "a record no stage could take") || !strings.Contains(page, "Nothing is held back") {
		t.Error("the stack operator sees commerce's held items")
	}
	post := func(c *http.Client, action string, form url.Values) (int, string) {
		t.Helper()
		if form.Get("csrf") == "" {
			_, p := e2e.Call(t, c, "GET", pw.url+"/portal/quarantine", "", "", nil)
			if m := csrfField.FindStringSubmatch(p); m != nil {
				form.Set("csrf", m[1])
			} else {
				_, p = e2e.Call(t, c, "GET", pw.url+"/portal/customers", "", "", nil)
				if m := csrfField.FindStringSubmatch(p); m != nil {
					form.Set("csrf", m[1])
				}
			}
		}
		resp, err := (&http.Client{Jar: c.Jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).PostForm(pw.url+"/portal/quarantine/"+id+"/"+action, form)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, string(b)
	}
	open := func() bool {
		it, err := pw.app.Quarantine.Get(ctx, op, items[0].ID)
		return err == nil && it.Resolution == ""
	}
	fab := pw.signIn(t, pw.w.SignIn("fabrikam"))
	if resp, _ := e2e.Call(t, fab, "GET", pw.url+"/portal/quarantine", "", "", nil); resp.StatusCode != http.StatusForbidden {
		t.Errorf("a partner opens the quarantine: %d", resp.StatusCode)
	}
	for _, c := range []struct {
		who    string
		client *http.Client
		action string
		form   url.Values
		want   int
	}{
		{"fabrikam", fab, "drop", url.Values{"confirm": {"yes"}}, http.StatusForbidden},
		{"stack-operator", so, "drop", url.Values{"confirm": {"yes"}}, http.StatusNotFound},
		{"operator without CSRF", pw.signIn(t, pw.w.SignIn("operator")), "drop", url.Values{"csrf": {"forged"}, "confirm": {"yes"}}, http.StatusForbidden},
		{"operator, unknown action", pw.signIn(t, pw.w.SignIn("operator")), "explode", url.Values{"confirm": {"yes"}}, http.StatusNotFound},
		// Releasing takes the payload through ingestion again; this one
		// does not decode, so it is refused and stays held.
		{"operator, release of a broken payload", pw.signIn(t, pw.w.SignIn("operator")), "release", url.Values{"confirm": {"yes"}}, http.StatusBadRequest},
	} {
		if code, body := post(c.client, c.action, c.form); code != c.want || !open() {
			t.Errorf("%s %s: %d (open %v), want %d and the item still held: %.300s", c.who, c.action, code, open(), c.want, body)
		}
	}
	opc := pw.signIn(t, pw.w.SignIn("operator"))
	if code, body := post(opc, "drop", url.Values{}); code != http.StatusOK || !strings.Contains(body, `id="confirm-drop"`) || !open() {
		t.Fatalf("the first click: %d (open %v), want the confirmation and no change", code, open())
	}
	if code, _ := post(opc, "drop", url.Values{"confirm": {"yes"}}); code != http.StatusSeeOther || open() {
		t.Fatalf("confirmed drop: %d, still open %v", code, open())
	}
	if page := pw.get(t, opc, "/portal/quarantine?state=all"); !strings.Contains(page, "dropped") {
		t.Error("the dropped item is not listed as dropped")
	}
	if page := overview("fabrikam"); strings.Contains(page, "are held") {
		t.Error("Fabrikam is still told its records are held after the drop")
	}
}
