package cli

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"text/tabwriter"

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
		if err := fs.Parse(rest); err != nil {
			return err
		}
		if fs.NArg() != 2 {
			return usagef("usage: stackbill directory history partner|customer|subscription ID")
		}
		var out struct{ Value []directory.Change }
		if _, err := mk().do(ctx, "GET", "/v1/directory/history/"+url.PathEscape(fs.Arg(0))+"/"+url.PathEscape(fs.Arg(1)), nil, &out); err != nil {
			return err
		}
		return printJSON(env.Stdout, out.Value)
	}
	return directoryEntity(ctx, env, verb, rest)
}

func directoryImport(ctx context.Context, env Env, args []string) error {
	fs := newFlags(env, "directory import")
	dbFlag := fs.String("db", defaultDB(env), "SQLite file path or postgres:// DSN")
	if err := fs.Parse(args); err != nil {
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
	if err := fs.Parse(rest); err != nil {
		return err
	}
	c0 := mk()
	base := "/v1/" + kind + "s"
	switch verb {
	case "list":
		tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
		switch kind {
		case "partner":
			var out struct{ Value []directory.Partner }
			if _, err := c0.do(ctx, "GET", base, nil, &out); err != nil {
				return err
			}
			fmt.Fprintln(tw, "ID\tNAME\tTYPE\tPROVIDER")
			for _, x := range out.Value {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", x.ID, x.Name, x.Type, x.Provider)
			}
		case "customer":
			var out struct{ Value []directory.Customer }
			if _, err := c0.do(ctx, "GET", base, nil, &out); err != nil {
				return err
			}
			fmt.Fprintln(tw, "TENANT\tNAME\tPARTNER")
			for _, x := range out.Value {
				fmt.Fprintf(tw, "%s\t%s\t%s\n", x.TenantID, x.Name, x.Partner)
			}
		default:
			var out struct{ Value []directory.Subscription }
			if _, err := c0.do(ctx, "GET", base, nil, &out); err != nil {
				return err
			}
			fmt.Fprintln(tw, "ID\tOFFER\tROLLS UP TO\tCUSTOMER TENANT\tNAME")
			for _, x := range out.Value {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", x.ID, x.Offer, x.Partner, x.CustomerTenantID, x.Name)
			}
		}
		return tw.Flush()
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
		var out any
		if _, err := c0.do(ctx, "GET", path, nil, &out); err != nil {
			return err
		}
		return printJSON(env.Stdout, out)
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
