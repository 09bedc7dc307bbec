package cli

import (
	"context"
	"io"
	"path/filepath"
	"strings"
	"time"

	"github.com/stackbill/stackbill/internal/bridge"
	"github.com/stackbill/stackbill/internal/clock"
	"github.com/stackbill/stackbill/internal/demo"
	"github.com/stackbill/stackbill/internal/store"
)

// demoInstance is what the demo package uses of app.
func demoInstance(app *App) *demo.Instance {
	return &demo.Instance{Receive: func(f *bridge.Forwarder) { f.DeliverTo(app.Handler) }, DB: app.DB, Clock: app.Clock, Logger: app.Logger, Auth: app.Auth, Billing: app.Billing, Directory: app.Directory,
		Forwarder: app.Forwarder, Issuer: app.Issuer, Registrations: app.Registrations, Tenancy: app.Tenancy, Usage: app.Usage,
		Budgets: app.Budgets, Notify: app.Notify}
}

// seedDemo seeds the demo world into app, whose database is dsn; the world
// is set up by a second instance on the same database whose clock stands
// before the backfill, and the backfill reports progress on w.
func seedDemo(ctx context.Context, app *App, dsn, usageEndpoint string, days int, w io.Writer) (demo.World, error) {
	at := func(ctx context.Context, t time.Time) (*demo.Instance, func(), error) {
		past, err := Build(ctx, Options{DB: dsn, Role: "all", Clock: clock.Manual(t), Logger: app.Logger})
		if err != nil {
			return nil, nil, err
		}
		return demoInstance(past), func() { past.Close() }, nil
	}
	return demo.Seed(ctx, demoInstance(app), at, usageEndpoint, days, progressTo(w))
}

// demoDirectDB is where the demo keeps Contoso's stamp: a stack of its own,
// on a SQLite file beside the demo's database (in the data folder when the
// demo runs on PostgreSQL), as a second cloud would have.
func demoDirectDB(env Env, dsn string) string {
	if !store.IsPostgresDSN(dsn) {
		return strings.TrimSuffix(dsn, ".db") + "-contoso-stamp.db"
	}
	return filepath.Join(filepath.Dir(demoDB(env)), "demo-contoso-stamp.db")
}

// seedDirectDemo builds Contoso's stamp: a stack-only App on stackDSN,
// seeded once (registration by Contoso, approval, activation against
// usageEndpoint, its customers mapped, days of usage backfilled). The caller
// runs its background work and closes it.
func seedDirectDemo(ctx context.Context, app *App, dsn, stackDSN, usageEndpoint string, days int, w io.Writer) (*App, demo.DirectWorld, error) {
	stack, err := Build(ctx, Options{DB: stackDSN, Role: "stack", Clock: app.Clock, Logger: app.Logger.With("stamp", demo.ContosoRegName)})
	if err != nil {
		return nil, demo.DirectWorld{}, err
	}
	at := func(role, dsn string) demo.At {
		return func(ctx context.Context, t time.Time) (*demo.Instance, func(), error) {
			past, err := Build(ctx, Options{DB: dsn, Role: role, Clock: clock.Manual(t), Logger: app.Logger})
			if err != nil {
				return nil, nil, err
			}
			return demoInstance(past), func() { past.Close() }, nil
		}
	}
	dw, err := demo.SeedDirect(ctx, demoInstance(stack), at("all", dsn), at("stack", stackDSN), usageEndpoint, days, progressTo(w))
	if err != nil {
		stack.Close()
		return nil, dw, err
	}
	return stack, dw, nil
}

// progressTo makes progress bars on w when it is a terminal.
func progressTo(w io.Writer) func(total int64, description string) demo.ProgressBar {
	if w == nil {
		return nil
	}
	return func(total int64, description string) demo.ProgressBar {
		if bar := newProgress(w, total, description); bar != nil {
			return bar
		}
		return nil
	}
}
