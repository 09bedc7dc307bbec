package cli

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stackbill/stackbill/internal/e2e"
)

// TestReadmeQuickstartRunsAsWritten runs the README's CLI quickstart
// verbatim, as a newcomer pastes it, against `stackbill serve` started as the
// README starts it, in a clean directory: only the binary (for `go run
// ./cmd/stackbill`) and the address (for the fixed port) are substituted.
// The stack must end up activated by the key commerce issued, on the
// database the server runs on.
func TestReadmeQuickstartRunsAsWritten(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	section := string(readme)
	i := strings.Index(section, "## Quickstart: register a stack and add an end customer (CLI)")
	if i < 0 {
		t.Fatal("the README has no CLI quickstart")
	}
	block := regexp.MustCompile("(?s)```sh\n(.*?)```").FindStringSubmatch(section[i:])
	if block == nil {
		t.Fatal("the quickstart has no sh block")
	}
	bin := e2e.BuildBinary(t, "../..")
	dir := t.TempDir()
	world, err := os.ReadFile("../store/storetest/testdata/world.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "internal/store/storetest/testdata"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "internal/store/storetest/testdata/world.json"), world, 0o644); err != nil {
		t.Fatal(err)
	}
	addr := e2e.FreeAddr(t)
	// The server as the README starts it: STACKBILL_OPERATOR_TOKEN=dev-operator stackbill serve.
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	srv := exec.CommandContext(ctx, bin, "serve", "--addr", addr)
	srv.Dir, srv.Env = dir, append(os.Environ(), "STACKBILL_OPERATOR_TOKEN=dev-operator")
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); _ = srv.Wait() }()
	if !e2e.WaitHealthy("http://" + addr) {
		t.Fatal("serve did not come up")
	}
	script := strings.NewReplacer("go run ./cmd/stackbill", bin, "127.0.0.1:8080", addr).Replace(block[1])
	sh := exec.CommandContext(ctx, "bash", "-euo", "pipefail", "-c", script)
	sh.Dir = dir
	sh.Env = os.Environ()
	out, err := sh.CombinedOutput()
	if err != nil {
		t.Fatalf("the quickstart failed: %v\n%s", err, out)
	}
	for _, want := range []string{"multi-tenancy approved: true", "now reports usage to CSP subscription", "Activated: registration my-stack", "activation             my-stack"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the quickstart's output lacks %q:\n%s", want, out)
		}
	}
	// Then prices and bills, as Azure and Partner Center clients read them.
	j := strings.Index(section, "## Prices and bills, as Azure and Partner Center clients read them")
	if j < 0 {
		t.Fatal("the README has no section on prices and bills")
	}
	prices := regexp.MustCompile("(?s)```sh\n(.*?)```").FindStringSubmatch(section[j:])
	if prices == nil {
		t.Fatal("the prices section has no sh block")
	}
	if err := os.MkdirAll(filepath.Join(dir, "docs", "samples"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"price-list-legacy.xlsx", "price-list-azure-plan.xlsx"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "docs", "samples", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "docs", "samples", f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	sh = exec.CommandContext(ctx, "bash", "-euo", "pipefail", "-c", strings.NewReplacer("go run ./cmd/stackbill", bin, "127.0.0.1:8080", addr).Replace(prices[1]))
	sh.Dir, sh.Env = dir, os.Environ()
	out, err = sh.CombinedOutput()
	if err != nil {
		t.Fatalf("the prices section failed: %v\n%s", err, out)
	}
	for _, want := range []string{"6 kept", `"MeterRegion":"Azure Stack"`, `"objectType":"AzureRateCard"`, `"objectType":"Collection"`} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the prices section's output lacks %q:\n%s", want, out)
		}
	}
	// Then budgets, alerts and webhooks.
	k := strings.Index(section, "## Budgets, alerts and webhooks")
	if k < 0 {
		t.Fatal("the README has no section on budgets")
	}
	budgets := regexp.MustCompile("(?s)```sh\n(.*?)```").FindStringSubmatch(section[k:])
	if budgets == nil {
		t.Fatal("the budgets section has no sh block")
	}
	sh = exec.CommandContext(ctx, "bash", "-euo", "pipefail", "-c", strings.NewReplacer("go run ./cmd/stackbill", bin, "127.0.0.1:8080", addr).Replace(budgets[1]))
	sh.Dir, sh.Env = dir, os.Environ()
	out, err = sh.CombinedOutput()
	if err != nil {
		t.Fatalf("the budgets section failed: %v\n%s", err, out)
	}
	for _, want := range []string{"bud_", "customer:aaaaaaaa-0000-4000-8000-00000000000a", "50%, 80%, 100%, 100% forecast", "registration.approved", "whsec_"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the budgets section's output lacks %q:\n%s", want, out)
		}
	}
	// The default period comes from the server.
	list := exec.CommandContext(ctx, bin, "billing", "invoice", "list")
	list.Dir, list.Env = dir, append(os.Environ(), "STACKBILL_URL=http://"+addr, "STACKBILL_OPERATOR_TOKEN=dev-operator")
	if out, err := list.CombinedOutput(); err != nil || !strings.HasPrefix(string(out), "INVOICE") {
		t.Errorf("billing invoice list without --period: %v\n%s", err, out)
	}
}
