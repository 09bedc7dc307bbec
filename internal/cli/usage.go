package cli

import (
	"context"
	"net/url"
	"time"

	"github.com/stackbill/stackbill/internal/ledger"
)

// runUsage shows usage forwarded to commerce, as a partner sees it.
func runUsage(ctx context.Context, env Env, args []string) error {
	_, rest, err := subcommand(args, "forwarded")
	if err != nil {
		return err
	}
	fs := newFlags(env, "usage forwarded")
	mk := clientFlags(fs, env)
	sub := fs.String("subscription", "", "the charged (customer or default) subscription")
	from := fs.String("from", "", "first usage day, RFC 3339 (default: all)")
	to := fs.String("to", "", "end of the usage range, RFC 3339 (default: now)")
	o := outputFlag(fs)
	if err := parseFlags(fs, rest); err != nil {
		return err
	}
	if err := o.check(); err != nil {
		return err
	}
	if *sub == "" {
		return usagef("--subscription is required")
	}
	q := url.Values{"subscriptionId": {*sub}}
	if *from != "" {
		q.Set("from", *from)
	}
	if *to != "" {
		q.Set("to", *to)
	}
	var out struct {
		Value []struct {
			ledger.ChargedTotal
			MeterName string `json:"meterName"`
			Unit      string `json:"unit"`
		}
	}
	if _, err := mk().do(ctx, "GET", "/v1/usage/forwarded?"+q.Encode(), nil, &out); err != nil {
		return err
	}
	rows := make([][]string, 0, len(out.Value))
	for _, t := range out.Value {
		meter, how := t.BillingMeterID, "default subscription"
		if meter == "" {
			meter = "(local only, not billed)"
		}
		if t.Mapped {
			how = "customer subscription"
		}
		name := t.MeterName
		if name == "" {
			name = t.LocalMeterID
		}
		rows = append(rows, []string{t.Day.Format(time.DateOnly), name, t.Quantity.String(), t.Unit, how, meter, t.LocalMeterID})
	}
	return o.print(env, []string{"day", "meter", "quantity", "unit", "charged as", "billing meter", "local meter"}, rows, out.Value)
}
