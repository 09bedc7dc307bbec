package cli

import (
	"flag"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/stackbill/stackbill/internal/csvexport"
)

// output is a read command's -o flag: a table for people (the default),
// JSON for programs, or CSV for spreadsheets (safe to open: cells that a
// spreadsheet would run as formulas are quoted, as in every export).
type output struct{ format string }

func outputFlag(fs *flag.FlagSet) *output {
	o := &output{}
	fs.StringVar(&o.format, "o", "table", "output: table, json or csv")
	return o
}

// parseWithOutput parses args, with the -o flag when the verb prints
// something (else the output is nil), and refuses an unknown format before
// any request is made.
func parseWithOutput(fs *flag.FlagSet, args []string, prints bool) (*output, error) {
	var o *output
	if prints {
		o = outputFlag(fs)
	}
	if err := parseFlags(fs, args); err != nil {
		return nil, err
	}
	if o != nil {
		if err := o.check(); err != nil {
			return nil, err
		}
	}
	return o, nil
}

// check refuses an unknown format before any request is made.
func (o *output) check() error {
	switch o.format {
	case "table", "json", "csv":
		return nil
	}
	return usagef("-o takes table, json or csv, not %q", o.format)
}

// print writes rows under header as the chosen format; JSON prints value,
// the objects the rows were drawn from.
func (o *output) print(env Env, header []string, rows [][]string, value any) error {
	switch o.format {
	case "json":
		return printJSON(env.Stdout, value)
	case "csv":
		w := csvexport.NewWriter(env.Stdout)
		if err := w.Write(header); err != nil {
			return err
		}
		for _, r := range rows {
			if err := w.Write(r); err != nil {
				return err
			}
		}
		w.Flush()
		return w.Error()
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.ToUpper(strings.Join(header, "\t")))
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

// printFields writes one object's fields: aligned "name  value" lines for a
// person, name,value rows as CSV, or value itself as JSON.
func (o *output) printFields(env Env, fields [][2]string, value any) error {
	switch o.format {
	case "json":
		return printJSON(env.Stdout, value)
	case "csv":
		rows := make([][]string, len(fields))
		for i, f := range fields {
			rows[i] = []string{f[0], f[1]}
		}
		return o.print(env, []string{"field", "value"}, rows, value)
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	for _, f := range fields {
		fmt.Fprintf(tw, "%s\t%s\n", f[0], f[1])
	}
	return tw.Flush()
}
