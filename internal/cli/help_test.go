package cli

import (
	"encoding/csv"
	"encoding/json"
	"flag"
	"fmt"
	"strings"
	"testing"

	"github.com/stackbill/stackbill/internal/demo"
)

// TestHelp: help is asked for and answered the way gh and kubectl do it:
// on stdout, exit 0, for the program, a command group and a subcommand, with
// flags spelled as typed; a missing subcommand is still a usage error.
func TestHelp(t *testing.T) {
	t.Parallel()
	cases := []struct {
		args   []string
		code   int
		stdout []string
	}{
		{[]string{"-h"}, 0, []string{"usage: stackbill <command>", "tenant"}},
		{[]string{"help"}, 0, []string{"usage: stackbill <command>"}},
		{[]string{"--version"}, 0, []string{"stackbill " + Version}},
		{[]string{"tenant", "-h"}, 0, []string{"usage: stackbill tenant <add|show|list|remove>", "stackbill tenant <subcommand> -h"}},
		{[]string{"registration", "--help"}, 0, []string{"usage: stackbill registration <create|"}},
		{[]string{"tenant", "add", "-h"}, 0, []string{"usage: stackbill tenant add [flags]", "  --tenant string", "examples:", "stackbill tenant add --subscription"}},
		{[]string{"help", "tenant", "add"}, 0, []string{"usage: stackbill tenant add [flags]", "examples:"}},
		{[]string{"help", "stack", "activate"}, 0, []string{"  --key-file string"}},
		{[]string{"tenant"}, 2, nil},
		{[]string{}, 2, nil},
	}
	for _, tc := range cases {
		r := runCLI(t, map[string]string{"STACKBILL_DATA": t.TempDir()}, tc.args...)
		if r.code != tc.code {
			t.Errorf("stackbill %v: exit %d, want %d (stderr %q)", tc.args, r.code, tc.code, r.stderr)
		}
		for _, want := range tc.stdout {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("stackbill %v: stdout lacks %q:\n%s", tc.args, want, r.stdout)
			}
		}
		if tc.code == 0 && r.stderr != "" {
			t.Errorf("stackbill %v: help wrote to stderr: %q", tc.args, r.stderr)
		}
	}
}

// TestExamplesUseRealFlags: every flag an example types is one its command
// takes, so an example never teaches a flag that fails.
func TestExamplesUseRealFlags(t *testing.T) {
	t.Parallel()
	helps := map[string]string{}
	help := func(cmd string) string {
		if h, ok := helps[cmd]; ok {
			return h
		}
		r := runCLI(t, map[string]string{"STACKBILL_DATA": t.TempDir()}, append(strings.Fields(cmd), "-h")...)
		if r.code != 0 {
			t.Fatalf("stackbill %s -h: exit %d: %s", cmd, r.code, r.stderr)
		}
		helps[cmd] = r.stdout
		return r.stdout
	}
	checked := 0
	for name, exs := range examples {
		for _, ex := range exs {
			cmd := ""
			for _, line := range strings.Split(ex, "\n") {
				words := strings.Fields(strings.NewReplacer("$(", " ", ")", " ", "=", " ", "#", " # ").Replace(line))
				for i := 0; i < len(words); i++ {
					w := words[i]
					switch {
					case w == "#":
						i = len(words)
					case w == "stackbill":
						var verbs []string
						for i+1 < len(words) && !strings.HasPrefix(words[i+1], "-") && !strings.ContainsAny(words[i+1], `"$/.`) {
							i++
							verbs = append(verbs, words[i])
						}
						cmd = strings.Join(verbs, " ")
					case strings.HasPrefix(w, "--") && cmd != "":
						checked++
						if !strings.Contains(help(cmd), "  "+w+" ") && !strings.Contains(help(cmd), "  "+w+"\n") {
							t.Errorf("the example of %q types %s, which 'stackbill %s' does not take", name, w, cmd)
						}
					}
				}
			}
		}
	}
	if checked < 20 {
		t.Fatalf("checked %d flags; the examples were not read", checked)
	}
}

// TestReadCommandsOutput: the read commands print a table by default, and
// the same rows as CSV (-o csv) or the objects as JSON (-o json).
func TestReadCommandsOutput(t *testing.T) {
	t.Parallel()
	pw := newPortalWorld(t, "sqlite", 1)
	env := map[string]string{"STACKBILL_URL": pw.url, "STACKBILL_TOKEN": pw.w.SignIn("fabrikam"), "STACKBILL_DATA": t.TempDir()}
	reg := []string{"--subscription", demo.FabrikamCSPSS, "--registration", demo.RegName}
	for _, cmd := range [][]string{
		{"registration", "list", "--subscription", demo.FabrikamCSPSS},
		{"registration", "get", "--subscription", demo.FabrikamCSPSS, "--name", demo.RegName},
		append([]string{"tenant", "list"}, reg...),
		append([]string{"tenant", "show", "--customer-subscription", demo.CustomerSub(0)}, reg...),
		{"billing", "invoice", "list"},
		{"usage", "forwarded", "--subscription", demo.CustomerSub(0)},
		{"directory", "partner", "list"},
		{"directory", "customer", "list"},
		{"directory", "subscription", "list"},
		{"directory", "history", "partner", "fabrikam", "--token", pw.w.SignIn("operator")},
		{"audit", "list"},
		{"quarantine", "list", "--all", "--token", pw.w.SignIn("operator")},
		{"token", "list", "--db", pw.dsn},
	} {
		table := runCLI(t, env, cmd...)
		asCSV := runCLI(t, env, append(cmd, "-o", "csv")...)
		asJSON := runCLI(t, env, append(cmd, "-o", "json")...)
		if table.code != 0 || asCSV.code != 0 || asJSON.code != 0 {
			t.Fatalf("%v: exits %d %d %d: %s%s%s", cmd, table.code, asCSV.code, asJSON.code, table.stderr, asCSV.stderr, asJSON.stderr)
		}
		recs, err := csv.NewReader(strings.NewReader(asCSV.stdout)).ReadAll()
		lines := strings.Split(strings.TrimSpace(table.stdout), "\n")
		// The demo world quarantines nothing: its list is the header alone.
		least := 2
		if cmd[0] == "quarantine" {
			least = 1
		}
		if err != nil || len(recs) != len(lines) || len(recs) < least {
			t.Errorf("%v: %d CSV records (%v), %d table lines", cmd, len(recs), err, len(lines))
		}
		var v any
		if err := json.Unmarshal([]byte(asJSON.stdout), &v); err != nil {
			t.Errorf("%v -o json: %v\n%s", cmd, err, asJSON.stdout)
		}
	}
	if r := runCLI(t, env, "tenant", "list", "-o", "xml", "--subscription", demo.FabrikamCSPSS, "--registration", demo.RegName); r.code != 2 {
		t.Errorf("-o xml: exit %d, want a usage error", r.code)
	}
}

// TestParseFlagsAfterArguments: flags may follow positional arguments, and
// "--" still ends them.
func TestParseFlagsAfterArguments(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		args     []string
		o        string
		all      bool
		position []string
	}{
		{[]string{"partner", "fabrikam", "-o", "json"}, "json", false, []string{"partner", "fabrikam"}},
		{[]string{"-o", "csv", "partner", "--all", "fabrikam"}, "csv", true, []string{"partner", "fabrikam"}},
		{[]string{"partner", "--", "-o", "json"}, "table", false, []string{"partner", "-o", "json"}},
		{[]string{"--all"}, "table", true, nil},
	} {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		o := fs.String("o", "table", "")
		all := fs.Bool("all", false, "")
		if err := parseFlags(fs, c.args); err != nil {
			t.Fatalf("%v: %v", c.args, err)
		}
		if *o != c.o || *all != c.all || fmt.Sprint(fs.Args()) != fmt.Sprint(c.position) {
			t.Errorf("%v: -o %s --all %v args %v; want %s %v %v", c.args, *o, *all, fs.Args(), c.o, c.all, c.position)
		}
	}
}
