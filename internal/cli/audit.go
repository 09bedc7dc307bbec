package cli

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/stackbill/stackbill/internal/audit"
)

// runAudit verifies the audit chain on the database, or lists records over
// the API (each principal sees its own scope).
func runAudit(ctx context.Context, env Env, args []string) error {
	verb, rest, err := subcommand(args, "verify", "list")
	if err != nil {
		return err
	}
	fs := newFlags(env, "audit "+verb)
	if verb == "verify" {
		dbFlag := fs.String("db", defaultDB(env), "SQLite file path or postgres:// DSN")
		if err := fs.Parse(rest); err != nil {
			return err
		}
		app, err := Build(ctx, Options{DB: *dbFlag})
		if err != nil {
			return err
		}
		defer app.Close()
		log := audit.NewLog(app.DB)
		total, err := log.Count(ctx)
		if err != nil {
			return err
		}
		bar := newProgress(env.Stderr, total, "verifying the audit chain")
		n, err := log.Verify(ctx, func(n int64) {
			if bar != nil {
				_ = bar.Set64(n)
			}
		})
		if bar != nil {
			_ = bar.Finish()
		}
		var broken *audit.Broken
		if errors.As(err, &broken) {
			fmt.Fprintf(env.Stdout, "TAMPERED: records 1–%d verify; %v\n", n, broken)
			return broken
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "ok: %d audit records, chain intact\n", n)
		return nil
	}
	mk := clientFlags(fs, env)
	kind := fs.String("kind", "", "only records of this kind (partner, customer, subscription, registration, tenantMapping, priceList, meterMap, priceBook, invoice, creditNote, agreement, meter, token)")
	id := fs.String("id", "", "only records of this entity")
	after := fs.Int64("after", 0, "records after this sequence number")
	if err := fs.Parse(rest); err != nil {
		return err
	}
	q := url.Values{"after": {strconv.FormatInt(*after, 10)}}
	if *kind != "" {
		q.Set("kind", *kind)
	}
	if *id != "" {
		q.Set("id", *id)
	}
	var page struct {
		Value []audit.Entry `json:"value"`
	}
	if _, err := mk().do(ctx, "GET", "/v1/audit?"+q.Encode(), nil, &page); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tAT\tACTOR\tACTION\tENTITY\tSCOPE")
	for _, e := range page.Value {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", e.Seq, e.At.Format(time.RFC3339), e.Actor, e.Action, e.ID, e.Scope)
	}
	return tw.Flush()
}
