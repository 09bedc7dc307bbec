// Package cli is stackbill's command line: every subcommand, and the one
// place where the program is wired together (Build). main calls Main with the
// process's arguments, environment and standard streams, so tests can run the
// whole program in-process.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Env is what a command may touch of the outside world.
type Env struct {
	Getenv func(string) string
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
}

type command struct {
	summary string
	run     func(ctx context.Context, env Env, args []string) error
}

func commands() map[string]command {
	return map[string]command{
		"serve":        {"run the commerce and/or stack services", runServe},
		"migrate":      {"apply database migrations and print the schema version", runMigrate},
		"backup":       {"write a consistent backup of the database while stackbill runs (SQLite snapshot, or pg_dump)", runBackup},
		"restore":      {"restore a backup into a database and verify it (schema and audit chain)", runRestore},
		"audit":        {"verify the hash-chained audit log, or list records in your scope (audit verify|list)", runAudit},
		"token":        {"create, list and revoke bearer tokens (token create|list|revoke)", runToken},
		"directory":    {"manage the partner directory (directory import|partner|customer|subscription)", runDirectory},
		"registration": {"manage Microsoft.AzureStack registrations (registration create|get|list|update|delete|approve|revoke-approval|history|activation-key|enable-remote-management)", runRegistration},
		"tenant":       {"map end-customer tenants to CSP subscriptions on a registration (tenant add|show|list|remove)", runTenant},
		"simulate":     {"play the resource providers: tenants, subscriptions and realistic usage (backfill and real time)", runSimulate},
		"stack":        {"the stack's identity, handshake and bridge (stack info|registration-token|activate|bridge status)", runStack},
		"usage":        {"usage forwarded to commerce, by subscription, meter and day (usage forwarded)", runUsage},
		"quarantine":   {"records a background stage held back: inspect, release or drop them (quarantine list|show|release|drop)", runQuarantine},
		"budget":       {"spending limits with alert thresholds on actual and forecast spend (budget create|list|show|update|delete)", runBudget},
		"webhook":      {"webhook endpoints that receive signed events, and their delivery logs (webhook create|list|show|update|delete|deliveries|delivery|replay|rotate-secret)", runWebhook},
		"events":       {"billing events in your scope: invoices finalized, registrations approved, records held (events list|show)", runEvents},
		"billing":      {"price lists, invoices, finalization, credit notes, reconciliation exports, price books and statements (billing price-list|agreement|invoice|period|credit-note|export|price-book|statements|verify)", runBilling},
		"bench":        {"measure the whole pipeline against in-run baselines (bench [--json] [--db DSN] [--stages …]), or one stage (bench registration|intake|usage-api|forward|rating)", runBench},
		"version":      {"print the version", runVersion},
	}
}

// Version is stackbill's version; release builds set it with -ldflags.
const Version = "0.1.0-dev"

// Main runs stackbill and returns the process exit code.
func Main(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) int {
	env := Env{Getenv: getenv, Stdin: stdin, Stdout: stdout, Stderr: stderr}
	cmds := commands()
	switch {
	case len(args) == 0:
		printUsage(stderr, cmds)
		return 2
	case (args[0] == "help" && len(args) > 1) || (args[0] == "--help" && len(args) > 1):
		// "stackbill help tenant add" is "stackbill tenant add -h".
		args = append(append([]string{}, args[1:]...), "-h")
	case args[0] == "-h" || args[0] == "--help" || args[0] == "help":
		printUsage(stdout, cmds)
		return 0
	case args[0] == "--version" || args[0] == "-version":
		args = []string{"version"}
	}
	cmd, ok := cmds[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "stackbill: unknown command %q\n\n", args[0])
		printUsage(stderr, cmds)
		return 2
	}
	if err := cmd.run(ctx, env, args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		var help helpRequest
		if errors.As(err, &help) {
			fmt.Fprintf(stdout, "usage: stackbill %s <%s> [flags]\n\n%s\n\nRun 'stackbill %s <subcommand> -h' for its flags and examples.\n",
				args[0], strings.Join(help.verbs, "|"), cmd.summary, args[0])
			return 0
		}
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprintf(stderr, "stackbill %s: %s\n", args[0], ue.msg)
			return 2
		}
		fmt.Fprintf(stderr, "stackbill %s: %v\n", args[0], err)
		return 1
	}
	return 0
}

func printUsage(w io.Writer, cmds map[string]command) {
	fmt.Fprintln(w, "usage: stackbill <command> [flags]\n\ncommands:")
	names := make([]string, 0, len(cmds))
	for n := range cmds {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-13s %s\n", n, cmds[n].summary)
	}
	fmt.Fprintln(w, "\nRun 'stackbill help <command>' (or 'stackbill <command> -h') for a command's flags and examples; 'stackbill --version' for the version.")
}

type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

// helpRequest is a command group asked for help ("stackbill tenant -h"):
// Main lists its subcommands on stdout and exits 0.
type helpRequest struct{ verbs []string }

func (h helpRequest) Error() string { return "help requested" }

// newFlags is a subcommand's flag set. Its help (-h) goes to stdout, with
// flags spelled as they are typed (--name) and the subcommand's examples;
// parse errors go to stderr.
func newFlags(env Env, name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	fs.Usage = func() { printFlags(env.Stdout, fs) }
	return fs
}

// parseFlags parses args as fs.Parse does, except that flags may also follow
// positional arguments, as with gh and kubectl ("directory history partner
// fabrikam -o json"). "--" still ends the flags: what follows is positional.
func parseFlags(fs *flag.FlagSet, args []string) error {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			positional = append(positional, rest...)
			break
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
	return fs.Parse(append([]string{"--"}, positional...))
}

// defaultDB is the embedded default: a SQLite file in a data folder, created
// on first start. STACKBILL_DB overrides it.
func defaultDB(env Env) string {
	if v := env.Getenv("STACKBILL_DB"); v != "" {
		return v
	}
	if v := env.Getenv("STACKBILL_DATA"); v != "" {
		return filepath.Join(v, "stackbill.db")
	}
	return filepath.Join("data", "stackbill.db")
}

// demoDB is where serve --demo keeps its world, apart from a real database.
func demoDB(env Env) string {
	if v := env.Getenv("STACKBILL_DATA"); v != "" {
		return filepath.Join(v, "demo.db")
	}
	return filepath.Join("data", "demo.db")
}

// subcommand splits "verb rest..." and reports a usage error listing verbs.
func subcommand(args []string, verbs ...string) (string, []string, error) {
	if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
		return "", nil, helpRequest{verbs: verbs}
	}
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		return "", nil, usagef("missing subcommand; want one of: %s", strings.Join(verbs, ", "))
	}
	for _, v := range verbs {
		if args[0] == v {
			return v, args[1:], nil
		}
	}
	return "", nil, usagef("unknown subcommand %q; want one of: %s", args[0], strings.Join(verbs, ", "))
}

func runVersion(_ context.Context, env Env, _ []string) error {
	fmt.Fprintln(env.Stdout, "stackbill", Version)
	return nil
}

func readFileArg(env Env, path string) ([]byte, error) {
	if path == "-" {
		return io.ReadAll(env.Stdin)
	}
	return os.ReadFile(path)
}
