package cli

import (
	"context"
	"flag"
	"fmt"
	"net/url"
	"strings"

	"github.com/stackbill/stackbill/internal/budget"
)

// runBudget keeps the caller's budgets and shows where each stands, over
// the API.
func runBudget(ctx context.Context, env Env, args []string) error {
	verb, rest, err := subcommand(args, "create", "list", "show", "update", "delete", "release")
	if err != nil {
		return err
	}
	fs := newFlags(env, "budget "+verb)
	mk := clientFlags(fs, env)
	var name, currency, amount, period, from, to, scope, thresholds, action *string
	if verb == "create" || verb == "update" {
		name = fs.String("name", "", "what the budget is for")
		currency = fs.String("currency", "", "the bill's currency, such as USD (a budget counts lines in it only)")
		amount = fs.String("amount", "", "the limit per period, in the currency")
		period = fs.String("period", "", "monthly (the default: each month on its own) or custom (one budget from --from to --to)")
		from = fs.String("from", "", "first month of a custom period, YYYY-MM")
		to = fs.String("to", "", "last month of a custom period, YYYY-MM")
		scope = fs.String("scope", "", "what it measures: all (default), partner:ID (operator), customer:TENANT, subscription:ID, registration:RESOURCE-ID or meterCategory:NAME")
		thresholds = fs.String("thresholds", "", "comma-separated percentages, a forecast one with an f: 50,80,100,100f (default)")
		action = fs.String("action", "", "disable: at 100 % of the amount, disable the customer's user subscriptions on its stamps until the budget is raised, the month turns or the hold is released (customer or subscription scope); none to remove it")
	}
	o, err := parseWithOutput(fs, rest, verb != "delete")
	if err != nil {
		return err
	}
	want := 1
	switch verb {
	case "create", "list":
		want = 0
	case "release":
		want = 2
	}
	if fs.NArg() != want {
		return usagef("budget %s takes %s", verb, map[int]string{0: "no arguments", 1: "the budget ID", 2: "the budget ID and the held tenant's ID"}[want])
	}
	c := mk()
	path := "/v1/budgets"
	if want >= 1 {
		path += "/" + url.PathEscape(fs.Arg(0))
	}
	switch verb {
	case "list":
		var page struct{ Value []budget.Budget }
		if _, err := c.do(ctx, "GET", path, nil, &page); err != nil {
			return err
		}
		var rows [][]string
		for _, b := range page.Value {
			rows = append(rows, []string{b.ID, orDash(b.OwnerID), b.Name, b.Amount.String() + " " + b.Currency, periodText(b), scopeText(b.Scope), thresholdText(b.Thresholds)})
		}
		return o.print(env, []string{"id", "owner", "name", "amount", "period", "scope", "thresholds"}, rows, page.Value)
	case "delete":
		if _, err := c.do(ctx, "DELETE", path, nil, nil); err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "deleted budget %s\n", fs.Arg(0))
		return nil
	case "release":
		if _, err := c.do(ctx, "POST", path+"/holds/"+url.PathEscape(fs.Arg(1))+"/release", nil, nil); err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "released tenant %s from budget %s: its stamps enable its user subscriptions at their next sync (within a minute), and the budget does not disable them again this period\n", fs.Arg(1), fs.Arg(0))
		return nil
	case "create", "update":
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		pick := func(flagName string, v *string) *string {
			if set[flagName] {
				return v
			}
			return nil
		}
		in := budget.Input{Name: pick("name", name), Currency: pick("currency", currency), Amount: pick("amount", amount),
			Period: pick("period", period), From: pick("from", from), To: pick("to", to)}
		if set["action"] {
			a := *action
			if a == "none" {
				a = ""
			}
			in.Action = &a
		}
		if set["scope"] {
			kind, id, _ := strings.Cut(*scope, ":")
			in.Scope = &budget.Scope{Kind: kind, ID: id}
		}
		if set["thresholds"] {
			ts, err := budget.ParseThresholds(*thresholds)
			if err != nil {
				return usagef("--thresholds: %v", err)
			}
			in.Thresholds = &ts
		}
		method := "POST"
		if verb == "update" {
			method = "PATCH"
		}
		var b budget.Budget
		if _, err := c.do(ctx, method, path, in, &b); err != nil {
			return err
		}
		return printBudget(env, o, b, nil, nil)
	}
	var view struct {
		budget.Budget
		Status []budget.Status `json:"status"`
		Holds  []budget.Hold   `json:"holds"`
	}
	if _, err := c.do(ctx, "GET", path, nil, &view); err != nil {
		return err
	}
	return printBudget(env, o, view.Budget, view.Status, view.Holds)
}

func periodText(b budget.Budget) string {
	if b.Period == "custom" {
		return b.From + " to " + b.To
	}
	return b.Period
}

func scopeText(sc budget.Scope) string {
	if sc.ID == "" {
		return sc.Kind
	}
	return sc.Kind + ":" + sc.ID
}

func thresholdText(ts []budget.Threshold) string {
	var out []string
	for _, t := range ts {
		s := t.Percent.String() + "%"
		if t.Basis == budget.Forecast {
			s += " forecast"
		}
		out = append(out, s)
	}
	return strings.Join(out, ", ")
}

func printBudget(env Env, o *output, b budget.Budget, status []budget.Status, holds []budget.Hold) error {
	fields := [][2]string{{"id", b.ID}, {"owner", orDash(b.OwnerID)}, {"name", b.Name}, {"amount", b.Amount.String() + " " + b.Currency},
		{"period", periodText(b)}, {"scope", scopeText(b.Scope)}, {"thresholds", thresholdText(b.Thresholds)}, {"action", orDash(b.Action)}}
	for _, st := range status {
		fields = append(fields, [2]string{st.Period, fmt.Sprintf("spent %s %s (%s%%), forecast %s", st.Spend, b.Currency, st.Used, st.Forecast)})
		for _, c := range st.Crossings {
			what := c.Percent.String() + "% " + c.Basis + " crossed " + c.At.Format("2006-01-02 15:04")
			if c.Late {
				what += " (late usage)"
			}
			fields = append(fields, [2]string{"", what})
		}
	}
	for _, h := range holds {
		what := fmt.Sprintf("tenant %s held since %s (spent %s)", h.TenantID, h.HeldAt.Format("2006-01-02 15:04"), h.Spend)
		if h.ReleasedAt != nil {
			what += fmt.Sprintf(", released %s by %s: %s", h.ReleasedAt.Format("2006-01-02 15:04"), h.ReleasedBy, h.ReleaseReason)
		}
		fields = append(fields, [2]string{"hold " + h.Period, what})
	}
	if status != nil {
		return o.printFields(env, fields, struct {
			budget.Budget
			Status []budget.Status `json:"status"`
			Holds  []budget.Hold   `json:"holds"`
		}{b, status, holds})
	}
	return o.printFields(env, fields, b)
}
