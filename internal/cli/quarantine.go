package cli

import (
	"context"
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
	if verb == "list" || verb == "show" {
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
	if o != nil {
		if err := o.check(); err != nil {
			return err
		}
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
	fields := [][2]string{{"item", strconv.FormatInt(it.ID, 10)}, {"held at", it.At.Format(time.RFC3339)}, {"stage", string(it.Stage)}, {"reason", it.Reason},
		{"records", strconv.Itoa(it.Records)}}
	if it.SubscriptionID != "" {
		fields = append(fields, [2]string{"subscription", it.SubscriptionID}, [2]string{"meter", orDash(it.MeterKey)}, [2]string{"quantity", orDash(it.Quantity)})
	}
	if it.Resolution != "" {
		fields = append(fields, [2]string{"state", it.Resolution + " by " + it.ResolvedBy + " at " + it.ResolvedAt.Format(time.RFC3339)})
	} else {
		fields = append(fields, [2]string{"state", "held"})
	}
	if o == nil {
		o = &output{format: "table"}
	}
	return o.printFields(env, fields, it)
}

func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}
