// Command stackbill is usage metering and CSP billing for multi-tenant
// private clouds. Everything it does lives in internal/cli; main only hands
// over the process's environment so that the whole program stays testable.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/stackbill/stackbill/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
