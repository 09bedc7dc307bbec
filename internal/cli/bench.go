package cli

import (
	"context"
)

func runBench(ctx context.Context, env Env, args []string) error {
	verb, rest, err := subcommand(args, "registration", "intake", "usage-api", "forward", "rating")
	if err != nil {
		return err
	}
	switch verb {
	case "intake":
		return benchIntake(ctx, env, rest)
	case "usage-api":
		return benchUsageAPI(ctx, env, rest)
	case "forward":
		return benchForward(ctx, env, rest)
	case "rating":
		return benchRating(ctx, env, rest)
	}
	return benchRegistration(ctx, env, rest)
}
