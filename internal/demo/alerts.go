package demo

import (
	"context"
	"time"

	"github.com/stackbill/stackbill/internal/auth"
	"github.com/stackbill/stackbill/internal/budget"
	"github.com/stackbill/stackbill/internal/money"
	"github.com/stackbill/stackbill/internal/notify"
)

const (
	alertsKey       = "demo.alerts"
	receiverPurpose = "the demo's receiver, printing each signed delivery"
)

// SeedAlerts gives the demo its budgets, once: Fabrikam's on its invoice
// and Tailspin's at what it charges its customers, each small enough that
// a few days of the stamp's usage cross thresholds (and the forecast
// crosses 100 %). It points an operator's webhook endpoint, taking every
// event, at receiverURL; the endpoint of an earlier start is replaced,
// since its secret was shown to that process only. It returns the new
// endpoint's secret.
func SeedAlerts(ctx context.Context, in *Instance, receiverURL string) (string, error) {
	op := auth.Principal{Role: auth.RoleOperator, TokenID: "demo"}
	done, err := in.DB.Setting(ctx, alertsKey, func() (string, error) { return "", nil })
	if err != nil {
		return "", err
	}
	if done == "" {
		for _, b := range []struct {
			owner  auth.Principal
			name   string
			amount string
			scope  budget.Scope
		}{
			{auth.Principal{Role: auth.RolePartner, PartnerID: "fabrikam", TokenID: "demo"}, "Fabrikam monthly", "1000", budget.Scope{Kind: budget.ScopeAll}},
			{auth.Principal{Role: auth.RoleReseller, PartnerID: "tailspin", TokenID: "demo"}, "Tailspin's customers", "400", budget.Scope{Kind: budget.ScopeAll}},
		} {
			cur := "USD"
			ts := []budget.Threshold{{Percent: money.FromInt(25), Basis: budget.Actual}, {Percent: money.FromInt(50), Basis: budget.Actual}, {Percent: money.FromInt(100), Basis: budget.Actual}, {Percent: money.FromInt(100), Basis: budget.Forecast}}
			if _, err := in.Budgets.Create(ctx, b.owner, budget.Input{Name: &b.name, Currency: &cur, Amount: &b.amount, Scope: &b.scope, Thresholds: &ts}); err != nil {
				return "", err
			}
		}
		if err := in.DB.SetSetting(ctx, alertsKey, in.Clock.Now().Format(time.RFC3339)); err != nil {
			return "", err
		}
	}
	eps, err := in.Notify.Endpoints(ctx, op)
	if err != nil {
		return "", err
	}
	for _, e := range eps {
		if e.OwnerID == "" && e.Description == receiverPurpose {
			if err := in.Notify.DeleteEndpoint(ctx, op, e.ID); err != nil {
				return "", err
			}
		}
	}
	desc, all := receiverPurpose, []string{"*"}
	ep, err := in.Notify.CreateEndpoint(ctx, op, notify.EndpointInput{URL: &receiverURL, Types: &all, Description: &desc})
	return ep.Secret, err
}
