package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/stackbill/stackbill/internal/arm"
	"github.com/stackbill/stackbill/internal/auth"
	"github.com/stackbill/stackbill/internal/directory"
)

func runToken(ctx context.Context, env Env, args []string) error {
	verb, rest, err := subcommand(args, "create", "list", "revoke")
	if err != nil {
		return err
	}
	fs := newFlags(env, "token "+verb)
	dbFlag := fs.String("db", defaultDB(env), "SQLite file path or postgres:// DSN")
	var roleName, partner, subscription, name string
	var ttl time.Duration
	var o *output
	if verb == "list" {
		o = outputFlag(fs)
	}
	if verb == "create" {
		fs.StringVar(&roleName, "role", "", "operator, partner, reseller, stack-operator, tenant, bridge or usage-writer")
		fs.StringVar(&partner, "partner", "", "the partner a partner or reseller token acts for")
		fs.StringVar(&subscription, "subscription", "", "the user subscription a tenant token may read")
		fs.StringVar(&name, "name", "", "a note to recognise the token by")
		fs.DurationVar(&ttl, "expires", 0, "lifetime, e.g. 720h; 0 never expires")
	}
	if err := parseFlags(fs, rest); err != nil {
		return err
	}
	if o != nil {
		if err := o.check(); err != nil {
			return err
		}
	}
	app, err := Build(ctx, Options{DB: *dbFlag})
	if err != nil {
		return err
	}
	defer app.Close()
	switch verb {
	case "list":
		toks, err := app.Auth.List(ctx)
		if err != nil {
			return err
		}
		var rows [][]string
		for _, t := range toks {
			scope, exp, state := t.PartnerID+t.SubscriptionID, "never", "active"
			if t.ExpiresAt != nil {
				exp = t.ExpiresAt.Format(time.RFC3339)
				if !app.Clock.Now().Before(*t.ExpiresAt) {
					state = "expired"
				}
			}
			if t.RevokedAt != nil {
				state = "revoked " + t.RevokedAt.Format(time.RFC3339)
			}
			rows = append(rows, []string{t.ID, string(t.Role), scope, t.Name, t.CreatedAt.Format(time.RFC3339), exp, state})
		}
		return o.print(env, []string{"id", "role", "scope", "name", "created", "expires", "state"}, rows, toks)
	case "revoke":
		if fs.NArg() != 1 {
			return usagef("usage: stackbill token revoke ID")
		}
		if err := app.Auth.Revoke(ctx, fs.Arg(0)); err != nil {
			return err
		}
		fmt.Fprintln(env.Stdout, "revoked", fs.Arg(0))
		return nil
	}
	role, err := auth.ParseRole(roleName)
	if err != nil {
		return usagef("%v", err)
	}
	if err := checkTokenScope(ctx, app, role, partner, &subscription); err != nil {
		return err
	}
	tok, _, err := app.Auth.Create(ctx, role, partner, subscription, name, ttl)
	if err != nil {
		return err
	}
	fmt.Fprintln(env.Stdout, tok)
	return nil
}

// checkTokenScope refuses tokens whose scope does not fit their role, so that
// a typo cannot produce a token that silently sees nothing (or too much).
func checkTokenScope(ctx context.Context, app *App, role auth.Role, partner string, subscription *string) error {
	operator := auth.Principal{Role: auth.RoleOperator, TokenID: "cli"}
	switch role {
	case auth.RolePartner, auth.RoleReseller:
		if partner == "" {
			return usagef("--role %s needs --partner ID", role)
		}
		p, err := app.Directory.GetPartner(ctx, operator, partner)
		if err != nil {
			return fmt.Errorf("partner %q: %w", partner, err)
		}
		if role == auth.RoleReseller && p.Type != directory.IndirectReseller {
			return usagef("partner %q is a %s; a reseller token needs an IndirectReseller", partner, p.Type)
		}
		if role == auth.RolePartner && p.Type == directory.IndirectReseller {
			return usagef("partner %q is an IndirectReseller; create a reseller token for it", partner)
		}
	case auth.RoleTenant, auth.RoleStackOperator:
		if *subscription == "" {
			if role == auth.RoleTenant {
				return usagef("--role tenant needs --subscription GUID (the user subscription it may read)")
			}
			return nil // the whole stack
		}
		id, ok := arm.CanonicalGUID(*subscription)
		if !ok {
			return usagef("--subscription %q is not a GUID", *subscription)
		}
		if _, exists, err := app.Tenancy.Lookup(ctx, id); err != nil {
			return err
		} else if !exists {
			return usagef("no user subscription %s on this stack", id)
		}
		*subscription = id
	default:
		if partner != "" || *subscription != "" {
			return usagef("--partner and --subscription do not apply to %s tokens", role)
		}
	}
	return nil
}
