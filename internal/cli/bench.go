package cli

import (
	"context"
)

func runBench(ctx context.Context, env Env, args []string) error {
	verb, rest, err := subcommand(args, "registration")
	if err != nil {
		return err
	}
	_ = verb
	return benchRegistration(ctx, env, rest)
}
