package cli

import (
	"context"
	"fmt"
	"net/url"
	"text/tabwriter"
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
	if err := fs.Parse(rest); err != nil {
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
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DAY\tMETER\tQUANTITY\tCHARGED AS\tBILLING METER\tLOCAL METER")
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
		fmt.Fprintf(tw, "%s\t%s\t%s %s\t%s\t%s\t%s\n", t.Day.Format(time.DateOnly), name, t.Quantity, t.Unit, how, meter, t.LocalMeterID)
	}
	return tw.Flush()
}
