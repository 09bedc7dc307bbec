package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"time"

	"github.com/stackbill/stackbill/internal/audit"
	"github.com/stackbill/stackbill/internal/bridge"
)

// checkpointKeys is the key set audit checkpoints are verified with: a file
// the operator kept apart from the database, else the database's own.
func checkpointKeys(ctx context.Context, app *App, path string) (bridge.JWKS, error) {
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return bridge.JWKS{}, usagef("--keys: %v", err)
		}
		var k bridge.JWKS
		if err := json.Unmarshal(b, &k); err != nil || len(k.Keys) == 0 {
			return bridge.JWKS{}, usagef("--keys %s is not a JSON key set ({\"keys\":[…]})", path)
		}
		return k, nil
	}
	k, _, err := bridge.LocalKeys(ctx, app.DB)
	return k, err
}

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
		keysFlag := fs.String("keys", "", "verify checkpoints against this key set (a saved copy of commerce's /v1/activation/keys) instead of the key in the database")
		if err := parseFlags(fs, rest); err != nil {
			return err
		}
		app, err := Build(ctx, Options{DB: *dbFlag})
		if err != nil {
			return err
		}
		defer app.Close()
		keys, err := checkpointKeys(ctx, app, *keysFlag)
		if err != nil {
			return err
		}
		log := audit.NewLog(app.DB)
		total, err := log.Count(ctx)
		if err != nil {
			return err
		}
		bar := newProgress(env.Stderr, total, "verifying the audit chain")
		rep, err := log.Verify(ctx, func(n int64) {
			if bar != nil {
				_ = bar.Set64(n)
			}
		}, bridge.CheckpointVerifier(keys))
		if bar != nil {
			_ = bar.Finish()
		}
		var broken *audit.Broken
		if errors.As(err, &broken) {
			fmt.Fprintf(env.Stdout, "TAMPERED: records 1–%d verify; %v\n", rep.Records, broken)
			return broken
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "ok: %d audit records, chain intact\n", rep.Records)
		switch {
		case rep.Checkpoints == 0:
			fmt.Fprintf(env.Stdout, "no signed checkpoints: an edit followed by recomputing every hash, or records cut from the end, would not show (commerce writes one a minute)\n")
		default:
			fmt.Fprintf(env.Stdout, "%d signed checkpoints hold; the last covers record %d (%s), and %d records after it rest on their hashes only\n",
				rep.Checkpoints, rep.LastCheckpoint, rep.LastAt.Format(time.RFC3339), rep.Records-rep.LastCheckpoint)
		}
		return nil
	}
	mk := clientFlags(fs, env)
	kind := fs.String("kind", "", "only records of this kind (partner, customer, subscription, registration, tenantMapping, priceList, meterMap, priceBook, invoice, creditNote, agreement, meter, token)")
	id := fs.String("id", "", "only records of this entity")
	after := fs.Int64("after", 0, "records after this sequence number")
	o := outputFlag(fs)
	if err := parseFlags(fs, rest); err != nil {
		return err
	}
	if err := o.check(); err != nil {
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
	rows := make([][]string, 0, len(page.Value))
	for _, e := range page.Value {
		rows = append(rows, []string{strconv.FormatInt(e.Seq, 10), e.At.Format(time.RFC3339), e.Actor, e.Action, e.ID, e.Scope})
	}
	return o.print(env, []string{"seq", "at", "actor", "action", "entity", "scope"}, rows, page.Value)
}
