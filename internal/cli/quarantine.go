package cli

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"time"

	"github.com/stackbill/stackbill/internal/quarantine"
)

// runQuarantine lists, shows, releases and drops what background stages
// held back, over the API.
func runQuarantine(ctx context.Context, env Env, args []string) error {
	verb, rest, err := subcommand(args, "list", "show", "release", "drop")
	if err != nil {
		return err
	}
	fs := newFlags(env, "quarantine "+verb)
	mk := clientFlags(fs, env)
	stage := fs.String("stage", "", "only this stage: aggregation, seal, ingest or materialise (list)")
	all := fs.Bool("all", false, "include resolved items (list)")
	var o *output
	if verb == "list" {
		o = outputFlag(fs)
	}
	if err := parseFlags(fs, rest); err != nil {
		return err
	}
	if verb == "list" {
		if fs.NArg() > 0 {
			return usagef("unexpected arguments: %v", fs.Args())
		}
		if err := o.check(); err != nil {
			return err
		}
		q := url.Values{}
		if *stage != "" {
			q.Set("stage", *stage)
		}
		if *all {
			q.Set("state", "all")
		}
		var page struct {
			Value []quarantine.Item `json:"value"`
		}
		if _, err := mk().do(ctx, "GET", "/v1/quarantine?"+q.Encode(), nil, &page); err != nil {
			return err
		}
		var rows [][]string
		for _, it := range page.Value {
			state := "held"
			if it.Resolution != "" {
				state = it.Resolution
			}
			rows = append(rows, []string{strconv.FormatInt(it.ID, 10), it.At.Format(time.RFC3339), string(it.Stage), orDash(it.SubscriptionID), orDash(it.Quantity), state, it.Reason})
		}
		return o.print(env, []string{"id", "held at", "stage", "subscription", "quantity", "state", "reason"}, rows, page.Value)
	}
	if fs.NArg() != 1 {
		return usagef("quarantine %s takes one item ID", verb)
	}
	path := "/v1/quarantine/" + url.PathEscape(fs.Arg(0))
	method := "GET"
	if verb != "show" {
		method, path = "POST", path+"/"+verb
	}
	var it quarantine.Item
	if _, err := mk().do(ctx, method, path, nil, &it); err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "item %d (%s): %s\n", it.ID, it.Stage, it.Reason)
	if it.SubscriptionID != "" {
		fmt.Fprintf(env.Stdout, "subscription %s, meter %s, quantity %s\n", it.SubscriptionID, orDash(it.MeterKey), orDash(it.Quantity))
	}
	if it.Resolution != "" {
		fmt.Fprintf(env.Stdout, "%s by %s at %s\n", it.Resolution, it.ResolvedBy, it.ResolvedAt.Format(time.RFC3339))
	}
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}
