package cli

import (
	"context"
	"io"
	"time"

	"github.com/stackbill/stackbill/internal/clock"
	"github.com/stackbill/stackbill/internal/demo"
)

// demoInstance is what the demo package uses of app.
func demoInstance(app *App) *demo.Instance {
	return &demo.Instance{DB: app.DB, Clock: app.Clock, Logger: app.Logger, Auth: app.Auth, Billing: app.Billing, Directory: app.Directory,
		Forwarder: app.Forwarder, Issuer: app.Issuer, Registrations: app.Registrations, Tenancy: app.Tenancy, Usage: app.Usage}
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
