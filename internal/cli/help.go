package cli

import (
	"flag"
	"fmt"
	"io"
	"strings"
)

// examples are what a subcommand's help shows under its flags: the calls a
// newcomer makes first, runnable as written against `serve` on
// http://127.0.0.1:8080 with STACKBILL_URL and a token exported.
var examples = map[string][]string{
	"serve": {
		"stackbill serve --demo                      # a demo world, the portal, usage in real time",
		"STACKBILL_OPERATOR_TOKEN=dev-operator stackbill serve   # an empty installation on ./data/stackbill.db",
		"stackbill serve --role commerce --db postgres://user@db/stackbill",
	},
	"budget create": {
		"stackbill budget create --name \"Adatum\" --currency USD --amount 5000 --scope customer:aaaaaaaa-0000-4000-8000-00000000000a --thresholds 50,80,100,100f",
	},
	"webhook create": {
		"stackbill webhook create --endpoint https://hooks.example.com/stackbill --types invoice.finalized,registration.approved",
	},
	"webhook deliveries": {
		"stackbill webhook deliveries ep_0123456789abcdefghijklmnop   # its newest deliveries, state and last answer",
	},
	"events list": {
		"stackbill events list --type invoice.finalized",
	},
	"tenant add": {
		"stackbill tenant add --subscription 11111111-0000-4000-8000-000000000001 --resource-group azurestack \\\n      --registration my-stack --customer-subscription aaaaaaaa-1111-4000-8000-00000000000a \\\n      --tenant aaaaaaaa-0000-4000-8000-00000000000a",
	},
	"tenant list": {
		"stackbill tenant list --subscription 11111111-0000-4000-8000-000000000001 --resource-group azurestack --registration my-stack",
	},
	"tenant remove": {
		"stackbill tenant remove --subscription 11111111-0000-4000-8000-000000000001 --resource-group azurestack \\\n      --registration my-stack --customer-subscription aaaaaaaa-1111-4000-8000-00000000000a",
	},
	"registration create": {
		"TOKEN=$(stackbill stack registration-token --billing-model PayAsYouUse)\nstackbill registration create --subscription 11111111-0000-4000-8000-000000000001 \\\n      --resource-group azurestack --name my-stack --registration-token \"$TOKEN\"",
	},
	"registration approve": {
		"stackbill registration approve --subscription 11111111-0000-4000-8000-000000000001 --resource-group azurestack --name my-stack",
	},
	"registration activation-key": {
		"stackbill registration activation-key --subscription 11111111-0000-4000-8000-000000000001 \\\n      --resource-group azurestack --name my-stack > activation.key\nstackbill stack activate --commerce-url http://127.0.0.1:8080 --key-file activation.key",
	},
	"stack activate": {
		"stackbill stack activate --commerce-url http://127.0.0.1:8080 --key-file activation.key",
		"printf %s \"$KEY\" | stackbill stack activate --key-file -     # the secret stays off the command line",
	},
	"token create": {
		"stackbill token create --role partner --partner contoso",
		"stackbill token create --role usage-writer --name provider-compute",
	},
	"directory import": {
		"stackbill directory import internal/store/storetest/testdata/world.json",
	},
	"simulate": {
		"stackbill simulate --tenants 10 --days 7 --totals totals.json",
	},
	"bench": {
		"stackbill bench                                  # every stage on SQLite",
		"stackbill bench --db postgres://user@db/bench   # commerce's stages on PostgreSQL",
		"stackbill bench --stages sustained --sustained-rates 10000,20000",
	},
}

// printFlags is a flag set's help: its usage line, its flags as they are
// typed (--name), and its examples.
func printFlags(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprintf(w, "usage: stackbill %s [flags]\n", fs.Name())
	var b strings.Builder
	fs.VisitAll(func(f *flag.Flag) {
		name, usage := flag.UnquoteUsage(f)
		fmt.Fprintf(&b, "  --%s", f.Name)
		if name != "" {
			fmt.Fprintf(&b, " %s", name)
		}
		fmt.Fprintf(&b, "\n        %s", strings.ReplaceAll(usage, "\n", "\n        "))
		if d := f.DefValue; d != "" && d != "false" && d != "0" {
			fmt.Fprintf(&b, " (default %s)", d)
		}
		b.WriteString("\n")
	})
	if b.Len() > 0 {
		fmt.Fprintf(w, "\nflags:\n%s", b.String())
	}
	if ex := examples[strings.TrimSpace(fs.Name())]; len(ex) > 0 {
		fmt.Fprintf(w, "\nexamples:\n")
		for _, e := range ex {
			fmt.Fprintf(w, "  %s\n", strings.ReplaceAll(e, "\n", "\n  "))
		}
	}
}
