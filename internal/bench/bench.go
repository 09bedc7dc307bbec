// Package bench owns the benchmarks behind `stackbill bench`: the whole
// pipeline stage by stage (parse floor, intake, aggregation, forwarding,
// ingest, rating, the usage API, the registration API), each on a fresh
// database, with the baselines it is compared with measured in the same run
// on the same data (a bulk INSERT or COPY of the same events, hand-written
// SQL over the same records), so that figures from a noisy machine are read
// as ratios. cli parses the command's flags, builds the instances and prints
// the reports.
package bench

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/stackbill/stackbill/internal/auth"
	"github.com/stackbill/stackbill/internal/billing"
	"github.com/stackbill/stackbill/internal/bridge"
	"github.com/stackbill/stackbill/internal/clock"
	"github.com/stackbill/stackbill/internal/directory"
	"github.com/stackbill/stackbill/internal/ledger"
	"github.com/stackbill/stackbill/internal/registration"
	"github.com/stackbill/stackbill/internal/store"
	"github.com/stackbill/stackbill/internal/tenancy"
	"github.com/stackbill/stackbill/internal/usage"
)

// Instance is what the benchmarks use of a stackbill instance; cli builds it.
type Instance struct {
	DB            *store.DB
	Clock         *clock.Clock
	Logger        *slog.Logger
	Handler       http.Handler
	Auth          *auth.Service
	Billing       *billing.Service
	Directory     *directory.Service
	Ledger        *ledger.Ledger
	Issuer        *bridge.Issuer
	Registrations *registration.Service
	Signer        *bridge.Signer
	Tenancy       *tenancy.Service
	Usage         *usage.Service
	Forwarder     *bridge.Forwarder
}

// Open builds an instance on dsn (a fresh SQLite file when empty) with an
// operator token, on clock c (the real clock when nil), and returns a
// function that closes it and removes what it made.
type Open func(ctx context.Context, dsn string, c *clock.Clock) (in *Instance, operatorToken string, closeFn func(), err error)

// ProgressBar is a progress bar a benchmark advances.
type ProgressBar interface {
	Add(int) error
	Finish() error
}

// Progress makes a progress bar for a total and a description; it, or what
// it returns, may be nil (no terminal).
type Progress func(total int64, description string) ProgressBar

// start is a bar that is safe to advance whatever p is.
func (p Progress) start(total int64, description string) ProgressBar {
	if p != nil {
		if b := p(total, description); b != nil {
			return b
		}
	}
	return noBar{}
}

type noBar struct{}

func (noBar) Add(int) error { return nil }
func (noBar) Finish() error { return nil }
