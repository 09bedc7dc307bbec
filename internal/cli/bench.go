package cli

import (
	"context"
	"strings"
)

func runBench(ctx context.Context, env Env, args []string) error {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		return benchAll(ctx, env, args)
	}
	verb, rest, err := subcommand(args, "all", "registration", "intake", "usage-api", "forward", "rating")
	if err != nil {
		return err
	}
	switch verb {
	case "all":
		return benchAll(ctx, env, rest)
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
