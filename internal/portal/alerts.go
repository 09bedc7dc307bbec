package portal

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/stackbill/stackbill/internal/arm"
	"github.com/stackbill/stackbill/internal/budget"
	"github.com/stackbill/stackbill/internal/notify"
)

// alertRow is an event as the alerts page lists it.
type alertRow struct {
	notify.Event
	Summary string
	Budget  bool
	Late    bool
}

// summary says in a line what an event reports, from its data.
func summary(e notify.Event) (text string, late bool) {
	var d map[string]any
	// Amounts stay as their decimal text.
	dec := json.NewDecoder(bytes.NewReader(e.Data))
	dec.UseNumber()
	_ = dec.Decode(&d)
	str := func(k string) string {
		switch v := d[k].(type) {
		case string:
			return v
		case json.Number:
			return v.String()
		}
		return ""
	}
	switch e.Type {
	case notify.BudgetThresholdCrossed:
		late, _ = d["late"].(bool)
		return fmt.Sprintf("Budget %q: %s%% of %s %s on the %s spend in %s (spent %s, forecast %s)",
			str("name"), str("percent"), str("amount"), str("currency"), str("basis"), str("period"), str("spend"), str("forecast")), late
	case notify.InvoiceFinalized:
		return fmt.Sprintf("Invoice %s for %s finalized: %s %s, %s lines", str("invoiceNumber"), str("period"), str("total"), str("currency"), str("lines")), false
	case notify.InvoiceDraftUpdated:
		return fmt.Sprintf("Draft invoice %s for %s now totals %s %s (%s lines)", str("invoiceNumber"), str("period"), str("total"), str("currency"), str("lines")), false
	case notify.UsageUnpriced:
		return fmt.Sprintf("Usage on meter %s in %s has no %s price: it is not on the invoice until a price list covers it", str("meterId"), str("period"), str("currency")), false
	case notify.BridgeLagging:
		return fmt.Sprintf("Stamp %s has sent no usage for %s (last at %s)", str("cloudId"), str("silentFor"), str("lastReceived")), false
	case notify.RegistrationApproved:
		return fmt.Sprintf("Registration approved for multi-tenancy by %s", str("approvedBy")), false
	case notify.QuarantineAdded:
		return fmt.Sprintf("%s held a record: %s", str("stage"), str("reason")), false
	}
	return e.Subject, false
}

// alertsWindow is how far back the bell counts.
const alertsWindow = 7 * 24 * time.Hour

// alerts lists the newest events the principal may see: budget crossings,
// finalized invoices, approvals, held records.
func (p *Portal) alerts(w http.ResponseWriter, r *http.Request, s *session) error {
	typ := r.URL.Query().Get("type")
	known := typ == ""
	for _, t := range notify.Types() {
		known = known || t == typ
	}
	if !known {
		typ = ""
	}
	evs, err := p.d.Notify.Latest(r.Context(), s.P, typ, 200)
	if err != nil {
		return err
	}
	rows := make([]alertRow, len(evs))
	for i, e := range evs {
		rows[i].Event = e
		rows[i].Summary, rows[i].Late = summary(e)
		rows[i].Budget = e.Type == notify.BudgetThresholdCrossed
	}
	p.render(w, r, s, "alerts", "Alerts", map[string]any{"Rows": rows, "Type": typ, "Types": notify.Types()})
	return nil
}

// budgetRow is a budget with where it stands and its holds.
type budgetRow struct {
	budget.Budget
	Status []budget.Status
	Holds  []budget.Hold
}

// budgets lists the principal's budgets with their spend and crossings.
func (p *Portal) budgets(w http.ResponseWriter, r *http.Request, s *session) error {
	list, standing, err := p.d.Budgets.Standing(r.Context(), s.P)
	if err != nil {
		return err
	}
	rows := make([]budgetRow, 0, len(list))
	for i, b := range list {
		holds, err := p.d.Budgets.Holds(r.Context(), s.P, b.ID)
		if err != nil {
			return err
		}
		rows = append(rows, budgetRow{b, standing[i], holds})
	}
	p.render(w, r, s, "budgets", "Budgets", map[string]any{"Rows": rows})
	return nil
}

// releaseHold undoes a budget's action for one tenant: its stamps enable
// its user subscriptions again at their next sync. Audited under the
// signed-in principal.
func (p *Portal) releaseHold(w http.ResponseWriter, r *http.Request, s *session) error {
	if _, err := p.d.Budgets.Release(r.Context(), s.P, r.PathValue("id"), r.PathValue("tenant")); err != nil {
		return err
	}
	http.Redirect(w, r, "/portal/budgets", http.StatusSeeOther)
	return nil
}

// createBudget makes a budget from the Budgets page's form.
func (p *Portal) createBudget(w http.ResponseWriter, r *http.Request, s *session) error {
	f := r.PostForm
	ts, err := budget.ParseThresholds(f.Get("thresholds"))
	if err != nil {
		return err
	}
	name, cur, amount := f.Get("name"), f.Get("currency"), f.Get("amount")
	in := budget.Input{Name: &name, Currency: &cur, Amount: &amount, Scope: &budget.Scope{Kind: f.Get("scopeKind"), ID: f.Get("scopeId")}}
	if len(ts) > 0 {
		in.Thresholds = &ts
	}
	if f.Get("disable") == "on" {
		action := budget.ActionDisable
		in.Action = &action
	}
	if _, err := p.d.Budgets.Create(r.Context(), s.P, in); err != nil {
		return err
	}
	http.Redirect(w, r, "/portal/budgets", http.StatusSeeOther)
	return nil
}

// hookRow is an endpoint with its newest deliveries.
type hookRow struct {
	notify.Endpoint
	Deliveries []notify.Delivery
}

// webhooks lists the principal's endpoints with their newest deliveries;
// after a creation it shows the new endpoint's secret, once.
func (p *Portal) webhooks(w http.ResponseWriter, r *http.Request, s *session) error {
	p.renderWebhooks(w, r, s, "")
	return nil
}

func (p *Portal) renderWebhooks(w http.ResponseWriter, r *http.Request, s *session, secret string) {
	eps, err := p.d.Notify.Endpoints(r.Context(), s.P)
	if err != nil {
		p.fail(w, r, s, err)
		return
	}
	rows := make([]hookRow, 0, len(eps))
	for _, e := range eps {
		ds, err := p.d.Notify.Deliveries(r.Context(), s.P, e.ID, 0, 10)
		if err != nil {
			p.fail(w, r, s, err)
			return
		}
		rows = append(rows, hookRow{e, ds})
	}
	p.render(w, r, s, "webhooks", "Webhooks", map[string]any{"Rows": rows, "Secret": secret, "Types": notify.Types()})
}

// createWebhook makes an endpoint from the Webhooks page's form and shows
// its secret on the answer, the only time it is shown.
func (p *Portal) createWebhook(w http.ResponseWriter, r *http.Request, s *session) error {
	url := r.PostForm.Get("url")
	types := r.PostForm["types"]
	if len(types) == 0 {
		types = []string{"*"}
	}
	ep, err := p.d.Notify.CreateEndpoint(r.Context(), s.P, notify.EndpointInput{URL: &url, Types: &types})
	if err != nil {
		return err
	}
	p.renderWebhooks(w, r, s, ep.Secret)
	return nil
}

// replayDelivery sends one delivery again from the Webhooks page.
func (p *Portal) replayDelivery(w http.ResponseWriter, r *http.Request, s *session) error {
	n, err := strconv.ParseInt(r.PathValue("n"), 10, 64)
	if err != nil || n < 1 {
		return arm.Errorf(arm.NotFound, "DeliveryNotFound", "Delivery '%.40s' was not found.", r.PathValue("n"))
	}
	if _, err := p.d.Notify.Replay(r.Context(), s.P, r.PathValue("id"), n); err != nil {
		return err
	}
	http.Redirect(w, r, "/portal/webhooks", http.StatusSeeOther)
	return nil
}
