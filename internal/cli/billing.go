package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/stackbill/stackbill/internal/billing"
	"github.com/stackbill/stackbill/internal/money"
)

// runBilling is the billing CLI: price lists, agreements, invoices, periods,
// credit notes, reconciliation exports, price books and statements.
func runBilling(ctx context.Context, env Env, args []string) error {
	sub, rest, err := subcommand(args, "price-list", "agreement", "invoice", "period", "credit-note", "export", "price-book", "statements", "verify")
	if err != nil {
		return err
	}
	switch sub {
	case "verify":
		return runBillingVerify(ctx, env, rest)
	case "price-list":
		return runPriceList(ctx, env, rest)
	case "agreement":
		fs := newFlags(env, "billing agreement")
		mk := clientFlags(fs, env)
		partner := fs.String("partner", "", "bill-to partner (direct CSP or indirect provider)")
		cur := fs.String("currency", "", "ISO 4217 currency of the partner's agreement")
		if err := parseFlags(fs, rest); err != nil {
			return err
		}
		if *partner == "" || *cur == "" {
			return usagef("--partner and --currency are required")
		}
		var out billing.Agreement
		if _, err := mk().do(ctx, "PUT", "/v1/billing/agreements/"+url.PathEscape(*partner), billing.Agreement{Currency: *cur}, &out); err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "%s is billed in %s\n", out.PartnerID, out.Currency)
		return nil
	case "invoice":
		return runInvoice(ctx, env, rest)
	case "period":
		what, rest, err := subcommand(rest, "show", "finalize")
		if err != nil {
			return err
		}
		fs := newFlags(env, "billing period "+what)
		mk := clientFlags(fs, env)
		var o *output
		if what == "show" {
			o = outputFlag(fs)
		}
		if err := parseFlags(fs, rest); err != nil {
			return err
		}
		if fs.NArg() != 1 {
			return usagef("give the period, YYYY-MM")
		}
		path := "/v1/billing/periods/" + url.PathEscape(fs.Arg(0))
		if what == "finalize" {
			var out any
			if _, err := mk().do(ctx, "POST", path+"/finalize", nil, &out); err != nil {
				return err
			}
			return printJSON(env.Stdout, out)
		}
		if err := o.check(); err != nil {
			return err
		}
		var out billing.PeriodSummary
		if _, err := mk().do(ctx, "GET", path, nil, &out); err != nil {
			return err
		}
		// A period reads as its invoices; what blocks finalization follows.
		rows := make([][]string, 0, len(out.Invoices)+len(out.Unpriced))
		for _, inv := range out.Invoices {
			rows = append(rows, []string{out.Period, out.Status, "invoice", inv.Number, inv.PartnerID, strconv.Itoa(inv.Lines), billing.FormatAmount(inv.Total, inv.Currency), inv.Currency})
		}
		for _, u := range out.Unpriced {
			rows = append(rows, []string{out.Period, out.Status, "unpriced", u.MeterID + " on " + u.Day.Format(time.DateOnly), u.PartnerID, "", u.Quantity.String(), u.Currency})
		}
		return o.print(env, []string{"period", "status", "kind", "invoice or meter", "partner", "lines", "amount or quantity", "currency"}, rows, out)
	case "credit-note":
		fs := newFlags(env, "billing credit-note")
		mk := clientFlags(fs, env)
		inv := fs.String("invoice", "", "finalized invoice number")
		line := fs.Int("line", 0, "invoice line to credit")
		amount := fs.String("amount", "", "amount to credit, in the invoice's currency")
		reason := fs.String("reason", "", "why (kept in the audit trail)")
		if err := parseFlags(fs, rest); err != nil {
			return err
		}
		q, err := money.ParseQuantity(*amount)
		if err != nil || *inv == "" || *line == 0 {
			return usagef("--invoice, --line and a decimal --amount are required")
		}
		var out billing.CreditNote
		if _, err := mk().do(ctx, "POST", "/v1/billing/invoices/"+url.PathEscape(*inv)+"/credit-notes",
			billing.CreditRequest{Reason: *reason, Lines: []billing.CreditLine{{Line: *line, Amount: q}}}, &out); err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "%s credits %s %s on %s\n", out.Number, out.Total.String(), out.Currency, out.InvoiceNumber)
		return nil
	case "export":
		return runExport(ctx, env, rest)
	case "price-book":
		return runPriceBook(ctx, env, rest)
	default: // statements
		fs := newFlags(env, "billing statements")
		mk := clientFlags(fs, env)
		owner := fs.String("owner", "", "the partner or reseller whose statements to show")
		per := fs.String("period", "", "billing period, YYYY-MM (default: the server's current period)")
		asJSON := fs.Bool("json", false, "print JSON (the same as -o json)")
		o := outputFlag(fs)
		if err := parseFlags(fs, rest); err != nil {
			return err
		}
		if *asJSON {
			o.format = "json"
		}
		if err := o.check(); err != nil {
			return err
		}
		if *owner == "" {
			return usagef("--owner is required")
		}
		if *per == "" {
			p, err := mk().period(ctx)
			if err != nil {
				return err
			}
			*per = p
		}
		var out struct{ Value []billing.Statement }
		if _, err := mk().do(ctx, "GET", "/v1/billing/statements/"+url.PathEscape(*owner)+"?period="+url.QueryEscape(*per), nil, &out); err != nil {
			return err
		}
		if out.Value == nil {
			out.Value = []billing.Statement{}
		}
		rows := make([][]string, 0, len(out.Value))
		for _, s := range out.Value {
			rows = append(rows, []string{s.Account, s.AccountName, s.Cost.String(), s.Amount.String(), s.Margin.String(), s.Currency})
		}
		return o.print(env, []string{"account", "name", "cost", "charge", "margin", "currency"}, rows, out.Value)
	}
}

func runPriceList(ctx context.Context, env Env, args []string) error {
	what, rest, err := subcommand(args, "import", "list", "show", "sample")
	if err != nil {
		return err
	}
	fs := newFlags(env, "billing price-list "+what)
	mk := clientFlags(fs, env)
	eff := fs.String("effective", "", "effective date YYYY-MM-DD (default: the file's latest EffectiveDate)")
	var layout, outFile *string
	if what == "sample" {
		layout = fs.String("layout", "", "write a sample .xlsx spreadsheet in this layout instead of CSV: "+billing.LayoutLegacy+" (the Azure in Global CSP price list) or "+billing.LayoutAzurePlan+" (the new-commerce Azure plan price list)")
		outFile = fs.String("out", "", "write the sample to this file (an .xlsx sample needs it, or stdout redirected to a file)")
	}
	o := &output{format: "table"}
	if what == "list" || what == "show" {
		o = outputFlag(fs)
	}
	if err := parseFlags(fs, rest); err != nil {
		return err
	}
	if err := o.check(); err != nil {
		return err
	}
	switch what {
	case "sample":
		data := billing.SamplePriceList()
		if *layout != "" {
			if data, err = billing.SamplePriceListSheet(*layout); err != nil {
				return usagef("--layout: %v", err)
			}
		}
		if *outFile != "" {
			return os.WriteFile(*outFile, data, 0o644)
		}
		if *layout != "" && isTerminal(env.Stdout) {
			return usagef("an .xlsx sample is binary: give --out FILE, or redirect stdout to a file")
		}
		_, err := env.Stdout.Write(data)
		return err
	case "list":
		var out struct{ Value []billing.PriceList }
		if _, err := mk().do(ctx, "GET", "/v1/billing/price-lists", nil, &out); err != nil {
			return err
		}
		rows := make([][]string, 0, len(out.Value))
		for _, p := range out.Value {
			rows = append(rows, []string{strconv.FormatInt(p.ID, 10), p.Currency, p.EffectiveFrom.Format(time.DateOnly), strconv.Itoa(p.Kept), p.Source, p.ImportedAt.Format(time.RFC3339) + " by " + p.ImportedBy})
		}
		if out.Value == nil {
			out.Value = []billing.PriceList{}
		}
		return o.print(env, []string{"id", "currency", "effective", "rows", "source", "imported"}, rows, out.Value)
	case "show":
		if fs.NArg() != 1 {
			return usagef("give the price list ID")
		}
		var out billing.PriceList
		if _, err := mk().do(ctx, "GET", "/v1/billing/price-lists/"+url.PathEscape(fs.Arg(0)), nil, &out); err != nil {
			return err
		}
		rows := make([][]string, 0, len(out.Prices))
		for _, p := range out.Prices {
			var tiers []string
			for _, t := range p.Tiers {
				tiers = append(tiers, "from "+t.From.String()+": "+t.Price.String())
			}
			rows = append(rows, []string{p.MeterID, p.Category + " / " + p.SubCategory + " / " + p.MeterName, p.Unit, p.IncludedQuantity.String(), strings.Join(tiers, "; ")})
		}
		return o.print(env, []string{"meter id", "meter", "unit", "included", "price (" + out.Currency + ")"}, rows, out)
	}
	if fs.NArg() != 1 {
		return usagef("give the price list file: CSV, or an .xlsx spreadsheet as Partner Center offers it")
	}
	data, err := os.ReadFile(fs.Arg(0))
	if err != nil {
		return err
	}
	contentType := "text/csv"
	if billing.IsSpreadsheet(data) {
		contentType = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
	}
	q := url.Values{"source": {fs.Arg(0)}}
	if *eff != "" {
		q.Set("effective", *eff)
	}
	var rep billing.ImportReport
	if err := mk().raw(ctx, "POST", "/v1/billing/price-lists?"+q.Encode(), contentType, bytes.NewReader(data), nil, &rep); err != nil {
		return err
	}
	state := "imported as"
	if rep.Unchanged {
		state = "unchanged: already"
	}
	fmt.Fprintf(env.Stdout, "%s price list %d (%s, effective %s): %d rows read, %d kept, %d skipped\n", state, rep.PriceList.ID, rep.PriceList.Currency,
		rep.PriceList.EffectiveFrom.Format(time.DateOnly), rep.RowsRead, rep.RowsKept, rep.RowsSkip)
	for reason, n := range rep.SkipReason {
		fmt.Fprintf(env.Stdout, "  skipped %d: %s\n", n, reason)
	}
	return nil
}

func runInvoice(ctx context.Context, env Env, args []string) error {
	what, rest, err := subcommand(args, "list", "get")
	if err != nil {
		return err
	}
	fs := newFlags(env, "billing invoice "+what)
	mk := clientFlags(fs, env)
	per := fs.String("period", "", "billing period, YYYY-MM (default: the server's current period)")
	var format *string
	var o *output
	o = outputFlag(fs)
	if what == "get" {
		format = fs.String("format", "", "the invoice document: json, csv or html (html prints to PDF from a browser); -o table prints its lines")
	}
	if err := parseFlags(fs, rest); err != nil {
		return err
	}
	if err := o.check(); err != nil {
		return err
	}
	if what == "list" {
		if *per == "" {
			p, err := mk().period(ctx)
			if err != nil {
				return err
			}
			*per = p
		}
		var out struct{ Value []billing.Invoice }
		if _, err := mk().do(ctx, "GET", "/v1/billing/invoices?period="+url.QueryEscape(*per), nil, &out); err != nil {
			return err
		}
		rows := make([][]string, 0, len(out.Value))
		for _, i := range out.Value {
			rows = append(rows, []string{i.Number, i.PartnerName, i.PartnerID, i.Status, billing.FormatAmount(i.Total, i.Currency), billing.FormatAmount(i.Balance, i.Currency), i.Currency})
		}
		if out.Value == nil {
			out.Value = []billing.Invoice{}
		}
		return o.print(env, []string{"invoice", "partner", "partner id", "status", "total", "balance", "currency"}, rows, out.Value)
	}
	if fs.NArg() != 1 {
		return usagef("give the invoice number")
	}
	path := "/v1/billing/invoices/" + url.PathEscape(fs.Arg(0))
	if *format != "" || o.format != "table" {
		// The document as the server renders it: -o json and -o csv are
		// --format json and csv.
		f := *format
		if f == "" {
			f = o.format
		}
		return mk().raw(ctx, "GET", path+"?format="+url.QueryEscape(f), "", nil, env.Stdout, nil)
	}
	var inv billing.Invoice
	if _, err := mk().do(ctx, "GET", path, nil, &inv); err != nil {
		return err
	}
	var rows [][]string
	for _, sec := range inv.Sections {
		for _, l := range sec.Lines {
			rows = append(rows, []string{strconv.Itoa(l.No), l.CustomerLabel(), l.SubscriptionID, l.MeterLabel(), l.Quantity.String() + " " + l.Unit, l.UnitPrice.String(),
				billing.FormatAmount(l.Amount, inv.Currency)})
		}
	}
	fmt.Fprintf(env.Stdout, "%s  %s  %s  %s  total %s %s\n\n", inv.Number, inv.PartnerName, inv.Period, inv.Status, billing.FormatAmount(inv.Total, inv.Currency), inv.Currency)
	return o.print(env, []string{"#", "customer", "subscription", "meter", "quantity", "unit price", "amount"}, rows, inv)
}

// showExport draws a polled export job on bar.
func showExport(bar *progressbar.ProgressBar, what string, job billing.ExportJob) {
	switch {
	case job.Phase == billing.PhaseWriting && job.RowsTotal > 0:
		bar.Describe(what + ": records")
		if bar.GetMax64() != job.RowsTotal {
			bar.ChangeMax64(job.RowsTotal)
		}
		_ = bar.Set64(job.RowsDone)
	default:
		phase := job.Phase
		if phase == "" {
			phase = job.Status
		}
		bar.Describe(what + ": " + phase)
		_ = bar.Add(0) // the spinner turns on every redraw
	}
}

func runExport(ctx context.Context, env Env, args []string) error {
	fs := newFlags(env, "billing export")
	mk := clientFlags(fs, env)
	partner := fs.String("partner", "", "bill-to partner (default: the token's partner)")
	per := fs.String("period", "", "billing period, YYYY-MM")
	out := fs.String("out", "", "file to write the daily rated-usage CSV to (default: stdout)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *per == "" {
		return usagef("--period is required")
	}
	c := mk()
	var job billing.ExportJob
	if _, err := c.do(ctx, "POST", "/v1/billing/exports", map[string]string{"partner": *partner, "period": *per}, &job); err != nil {
		return err
	}
	// A spinner while the server reads and orders the records (no record is
	// written before the database has sorted them all), then a bar of the
	// records written.
	what := "exporting " + job.PartnerID + " " + job.Period
	bar := newProgress(env.Stderr, -1, what+": queued")
	for job.Status == "queued" || job.Status == "running" {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(300 * time.Millisecond):
		}
		if _, err := c.do(ctx, "GET", "/v1/billing/exports/"+job.ID, nil, &job); err != nil {
			return err
		}
		if bar != nil {
			showExport(bar, what, job)
		}
	}
	if bar != nil {
		_ = bar.Finish()
	}
	if job.Status != "succeeded" {
		return fmt.Errorf("export %s %s: %s", job.ID, job.Status, job.Error)
	}
	w := env.Stdout
	if *out != "" {
		f, err := os.Create(*out)
		if err != nil {
			return err
		}
		defer f.Close()
		w = f
	}
	if err := c.raw(ctx, "GET", "/v1/billing/exports/"+job.ID+"/file", "", nil, w, nil); err != nil {
		return err
	}
	if *out != "" {
		fmt.Fprintf(env.Stderr, "wrote %s: %d usage records rated\n", *out, job.RowsTotal)
	}
	return nil
}

func runPriceBook(ctx context.Context, env Env, args []string) error {
	what, rest, err := subcommand(args, "put", "list", "delete")
	if err != nil {
		return err
	}
	fs := newFlags(env, "billing price-book "+what)
	mk := clientFlags(fs, env)
	owner := fs.String("owner", "", "the partner or reseller who owns the book")
	target := fs.String("target", billing.DefaultTarget, "'default', a customer tenant, or (for a provider) a reseller")
	markup := fs.String("markup", "0", "markup percent over cost")
	var prices multiFlag
	fs.Var(&prices, "price", "METER_ID=UNIT_PRICE, repeatable: a per-meter price (also for local-only meters)")
	o := &output{format: "table"}
	if what == "list" {
		o = outputFlag(fs)
	}
	if err := parseFlags(fs, rest); err != nil {
		return err
	}
	if err := o.check(); err != nil {
		return err
	}
	if *owner == "" {
		return usagef("--owner is required")
	}
	c := mk()
	base := "/v1/billing/price-books/" + url.PathEscape(*owner)
	switch what {
	case "list":
		var out struct{ Value []billing.PriceBook }
		if _, err := c.do(ctx, "GET", base, nil, &out); err != nil {
			return err
		}
		if out.Value == nil {
			out.Value = []billing.PriceBook{}
		}
		rows := make([][]string, 0, len(out.Value))
		for _, b := range out.Value {
			var prices []string
			for m, p := range b.Prices {
				prices = append(prices, m+"="+p.String())
			}
			sort.Strings(prices)
			rows = append(rows, []string{b.Target, b.MarkupPercent.String() + " %", strings.Join(prices, " "), b.UpdatedAt.Format(time.RFC3339) + " by " + b.UpdatedBy})
		}
		return o.print(env, []string{"target", "markup", "fixed prices", "updated"}, rows, out.Value)
	case "delete":
		_, err := c.do(ctx, "DELETE", base+"/"+url.PathEscape(*target), nil, nil)
		return err
	}
	m, err := money.ParseQuantity(*markup)
	if err != nil {
		return usagef("--markup: %v", err)
	}
	b := billing.PriceBook{MarkupPercent: m, Prices: map[string]money.Quantity{}}
	for _, p := range prices {
		k, v, ok := strings.Cut(p, "=")
		q, err := money.ParseQuantity(v)
		if !ok || err != nil {
			return usagef("--price %q: want METER_ID=UNIT_PRICE", p)
		}
		b.Prices[k] = q
	}
	var out billing.PriceBook
	if _, err := c.do(ctx, "PUT", base+"/"+url.PathEscape(*target), b, &out); err != nil {
		return err
	}
	return printJSON(env.Stdout, out)
}

// raw sends a request with a non-JSON body and copies a successful answer
// to w, or decodes it into out.
func (c *client) raw(ctx context.Context, method, path, contentType string, body io.Reader, w io.Writer, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	hc := *c.http
	hc.Timeout = 0 // exports and invoices stream for as long as they need
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach stackbill at %s: %w", c.base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 400 {
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		var env struct {
			Error *apiError `json:"error"`
		}
		if json.Unmarshal(raw, &env) == nil && env.Error != nil {
			env.Error.Status = resp.StatusCode
			return env.Error
		}
		return &apiError{Status: resp.StatusCode, Code: http.StatusText(resp.StatusCode), Message: strconv.Quote(strings.TrimSpace(string(raw)))}
	}
	if out != nil {
		return json.NewDecoder(resp.Body).Decode(out)
	}
	_, err = io.Copy(w, resp.Body)
	return err
}

// runBillingVerify checks, on the database, that every view of every bill
// agrees with the bill (billing.Service.Verify), and lists each difference
// with the records it involves.
func runBillingVerify(ctx context.Context, env Env, args []string) error {
	fs := newFlags(env, "billing verify")
	dbFlag := fs.String("db", defaultDB(env), "SQLite file path or postgres:// DSN")
	period := fs.String("period", "", "only this period (YYYY-MM); default: every finalized period and the open one")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	app, err := Build(ctx, Options{DB: *dbFlag, Role: "commerce"})
	if err != nil {
		return err
	}
	defer app.Close()
	rep, err := app.Billing.Verify(ctx, *period)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(env.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(env.Stdout, "periods %s: %d invoices, %d lines, %d reconciliation rows, %d statements, %d usage series checked\n",
			strings.Join(rep.Periods, ", "), rep.Invoices, rep.Lines, rep.ReconRows, rep.Statements, rep.Series)
		for _, n := range rep.Notes {
			fmt.Fprintf(env.Stdout, "note: %s\n", n)
		}
		for _, d := range rep.Differences {
			fmt.Fprintf(env.Stdout, "DIFFERS: %s\n", d)
		}
		if len(rep.Differences) == 0 {
			fmt.Fprintln(env.Stdout, "ok: every view agrees with its bill, to the cent")
		}
	}
	if len(rep.Differences) > 0 {
		return fmt.Errorf("%d differences", len(rep.Differences))
	}
	return nil
}
