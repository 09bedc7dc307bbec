package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"time"

	"github.com/stackbill/stackbill/internal/auth"
	"github.com/stackbill/stackbill/internal/directory"
)

func runDirectory(ctx context.Context, env Env, args []string) error {
	verb, rest, err := subcommand(args, "import", "partner", "customer", "subscription", "history")
	if err != nil {
		return err
	}
	switch verb {
	case "import":
		return directoryImport(ctx, env, rest)
	case "history":
		fs := newFlags(env, "directory history")
		mk := clientFlags(fs, env)
		o := outputFlag(fs)
		if err := parseFlags(fs, rest); err != nil {
			return err
		}
		if err := o.check(); err != nil {
			return err
		}
		if fs.NArg() != 2 {
			return usagef("usage: stackbill directory history partner|customer|subscription ID")
		}
		var out struct{ Value []directory.Change }
		if _, err := mk().do(ctx, "GET", "/v1/directory/history/"+url.PathEscape(fs.Arg(0))+"/"+url.PathEscape(fs.Arg(1)), nil, &out); err != nil {
			return err
		}
		rows := make([][]string, 0, len(out.Value))
		for _, c := range out.Value {
			rows = append(rows, []string{strconv.FormatInt(c.Seq, 10), c.At.Format(time.RFC3339), c.Actor, c.Op, string(c.Data)})
		}
		return o.print(env, []string{"seq", "at", "actor", "op", "data"}, rows, out.Value)
	}
	return directoryEntity(ctx, env, verb, rest)
}

func directoryImport(ctx context.Context, env Env, args []string) error {
	fs := newFlags(env, "directory import")
	dbFlag := fs.String("db", defaultDB(env), "SQLite file path or postgres:// DSN")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("usage: stackbill directory import [--db DSN] FILE (or - for standard input)")
	}
	data, err := readFileArg(env, fs.Arg(0))
	if err != nil {
		return err
	}
	app, err := Build(ctx, Options{DB: *dbFlag})
	if err != nil {
		return err
	}
	defer app.Close()
	rep, err := app.Directory.Import(ctx, auth.Principal{Role: auth.RoleOperator, TokenID: "cli-import"}.Actor(), data)
	var ie *directory.ImportError
	if errors.As(err, &ie) {
		return fmt.Errorf("%s", ie.Error())
	}
	if err != nil {
		return err
	}
	for _, kind := range []struct {
		name string
		m    map[string]int
	}{{"partners", rep.Partners}, {"customers", rep.Customers}, {"subscriptions", rep.Subscriptions}} {
		fmt.Fprintf(env.Stdout, "%-14s created %d, updated %d, unchanged %d\n", kind.name, kind.m[directory.Created], kind.m[directory.Updated], kind.m[directory.Unchanged])
	}
	return nil
}

// directoryEntity handles "directory partner|customer|subscription list|get|put|remove".
func directoryEntity(ctx context.Context, env Env, kind string, args []string) error {
	verb, rest, err := subcommand(args, "list", "get", "put", "remove")
	if err != nil {
		return err
	}
	fs := newFlags(env, "directory "+kind+" "+verb)
	mk := clientFlags(fs, env)
	var p directory.Partner
	var c directory.Customer
	var s directory.Subscription
	var ptype, offer string
	var o *output
	if verb == "list" || verb == "get" {
		o = outputFlag(fs)
	}
	if verb == "put" {
		switch kind {
		case "partner":
			fs.StringVar(&p.ID, "id", "", "partner id")
			fs.StringVar(&p.Name, "name", "", "display name")
			fs.StringVar(&ptype, "type", "", "DirectCSP, IndirectProvider or IndirectReseller")
			fs.StringVar(&p.Provider, "provider", "", "a reseller's indirect provider")
			fs.StringVar(&p.MpnID, "mpn-id", "", "Microsoft Partner Network id")
		case "customer":
			fs.StringVar(&c.TenantID, "tenant", "", "the customer's directory tenant id (GUID)")
			fs.StringVar(&c.Name, "name", "", "display name")
			fs.StringVar(&c.Partner, "partner", "", "the direct CSP or reseller the customer belongs to")
		case "subscription":
			fs.StringVar(&s.ID, "id", "", "subscription id (GUID)")
			fs.StringVar(&offer, "offer", "", "CSP, CSPSS, EA or PAYG")
			fs.StringVar(&s.Partner, "partner", "", "the partner the subscription rolls up to")
			fs.StringVar(&s.CustomerTenantID, "customer-tenant", "", "a CSP subscription's customer tenant")
			fs.StringVar(&s.Name, "name", "", "display name")
		}
	}
	if err := parseFlags(fs, rest); err != nil {
		return err
	}
	if o != nil {
		if err := o.check(); err != nil {
			return err
		}
	}
	c0 := mk()
	base := "/v1/" + kind + "s"
	switch verb {
	case "list":
		var out struct{ Value json.RawMessage }
		if _, err := c0.do(ctx, "GET", base, nil, &out); err != nil {
			return err
		}
		return printDirectory(env, o, kind, out.Value, true)
	case "get", "remove":
		if fs.NArg() != 1 {
			return usagef("usage: stackbill directory %s %s ID", kind, verb)
		}
		path := base + "/" + url.PathEscape(fs.Arg(0))
		if verb == "remove" {
			status, err := c0.do(ctx, "DELETE", path, nil, nil)
			if err != nil {
				return err
			}
			if status == 204 {
				fmt.Fprintf(env.Stdout, "%s %s was not in the directory\n", kind, fs.Arg(0))
			} else {
				fmt.Fprintf(env.Stdout, "removed %s %s\n", kind, fs.Arg(0))
			}
			return nil
		}
		var out json.RawMessage
		if _, err := c0.do(ctx, "GET", path, nil, &out); err != nil {
			return err
		}
		return printDirectory(env, o, kind, out, false)
	}
	var body any
	var id string
	switch kind {
	case "partner":
		p.Type = directory.PartnerType(ptype)
		body, id = p, p.ID
	case "customer":
		body, id = c, c.TenantID
	default:
		s.Offer = directory.Offer(offer)
		body, id = s, s.ID
	}
	if id == "" {
		return usagef("put needs the entry's id (see -h)")
	}
	var out any
	status, err := c0.do(ctx, "PUT", base+"/"+url.PathEscape(id), body, &out)
	if err != nil {
		return err
	}
	verbDone := "updated"
	if status == 201 {
		verbDone = "created"
	}
	fmt.Fprintf(env.Stderr, "%s %s %s\n", verbDone, kind, id)
	return printJSON(env.Stdout, out)
}

// printDirectory prints directory entries of kind (one entry, or a list
// when many) as o asks: each kind's columns in a table or CSV, or as the
// API answered them in JSON.
func printDirectory(env Env, o *output, kind string, data json.RawMessage, many bool) error {
	var header []string
	var rows [][]string
	var value any
	switch kind {
	case "partner":
		header = []string{"id", "name", "type", "provider", "mpn id"}
		var xs []directory.Partner
		if err := unmarshalOneOrMany(data, many, &xs); err != nil {
			return err
		}
		for _, x := range xs {
			rows = append(rows, []string{x.ID, x.Name, string(x.Type), x.Provider, x.MpnID})
		}
		value = xs
	case "customer":
		header = []string{"tenant", "name", "partner"}
		var xs []directory.Customer
		if err := unmarshalOneOrMany(data, many, &xs); err != nil {
			return err
		}
		for _, x := range xs {
			rows = append(rows, []string{x.TenantID, x.Name, x.Partner})
		}
		value = xs
	default:
		header = []string{"id", "offer", "rolls up to", "customer tenant", "name"}
		var xs []directory.Subscription
		if err := unmarshalOneOrMany(data, many, &xs); err != nil {
			return err
		}
		for _, x := range xs {
			rows = append(rows, []string{x.ID, string(x.Offer), x.Partner, x.CustomerTenantID, x.Name})
		}
		value = xs
	}
	if !many {
		// JSON shows the entry as the API answered it.
		value = data
	}
	return o.print(env, header, rows, value)
}

// unmarshalOneOrMany decodes a JSON list into *xs, or one object as a
// list of one.
func unmarshalOneOrMany[T any](data []byte, many bool, xs *[]T) error {
	if many {
		return json.Unmarshal(data, xs)
	}
	var one T
	if err := json.Unmarshal(data, &one); err != nil {
		return err
	}
	*xs = []T{one}
	return nil
}
