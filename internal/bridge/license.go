package bridge

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// DeploymentLicense is Microsoft.AzureStack's generateDeploymentLicense
// answer: a temporary license for a stack that reports no usage (Capacity,
// or disconnected), which commerce signs and the stack verifies offline
// with the keys of commerce's cloud manifest.
type DeploymentLicense struct {
	TemporaryLicenseChain []string `json:"temporaryLicenseChain"`
	Signature             string   `json:"signature"`
}

// LicenseClaims is what a license grants: a deployment on subscription,
// from IssuedAt until ExpiresAt, under manifest version Version (the
// signing key's ID).
type LicenseClaims struct {
	Subscription string    `json:"subscriptionId"`
	Issuer       string    `json:"issuer"`
	Version      string    `json:"verificationVersion"`
	IssuedAt     time.Time `json:"issuedAt"`
	ExpiresAt    time.Time `json:"expiresAt"`
}

// LicenseTTL is how long a temporary deployment license lasts: a
// disconnected stamp renews it monthly, as its Capacity billing is yearly
// per core and needs no usage.
const LicenseTTL = 30 * 24 * time.Hour

// License signs a temporary deployment license for subscription. The chain
// holds one link, the claims as base64url JSON; the signature covers the
// chain.
func (s *Signer) License(ctx context.Context, subscription, issuer string, now time.Time) (DeploymentLicense, error) {
	if err := s.load(ctx); err != nil {
		return DeploymentLicense{}, err
	}
	c := LicenseClaims{Subscription: subscription, Issuer: issuer, Version: s.kid, IssuedAt: now.UTC().Truncate(time.Second), ExpiresAt: now.UTC().Truncate(time.Second).Add(LicenseTTL)}
	b, err := json.Marshal(c)
	if err != nil {
		return DeploymentLicense{}, err
	}
	chain := []string{base64.RawURLEncoding.EncodeToString(b)}
	_, sig, err := s.sign(ctx, []byte(strings.Join(chain, ".")))
	if err != nil {
		return DeploymentLicense{}, err
	}
	return DeploymentLicense{TemporaryLicenseChain: chain, Signature: sig}, nil
}

// ErrLicense is a license that does not verify, or has expired.
var ErrLicense = errors.New("deployment license refused")

// VerifyLicense checks a license's signature with commerce's keys (from its
// cloud manifest) and its dates against now.
func VerifyLicense(l DeploymentLicense, keys JWKS, now time.Time) (LicenseClaims, error) {
	if len(l.TemporaryLicenseChain) != 1 {
		return LicenseClaims{}, fmt.Errorf("%w: want a chain of one link, got %d", ErrLicense, len(l.TemporaryLicenseChain))
	}
	b, err := base64.RawURLEncoding.DecodeString(l.TemporaryLicenseChain[0])
	var c LicenseClaims
	if err != nil || json.Unmarshal(b, &c) != nil {
		return LicenseClaims{}, fmt.Errorf("%w: its claims do not decode", ErrLicense)
	}
	if err := CheckpointVerifier(keys)(c.Version, []byte(strings.Join(l.TemporaryLicenseChain, ".")), l.Signature); err != nil {
		return c, fmt.Errorf("%w: the signature is not commerce's (%v)", ErrLicense, err)
	}
	if now.Before(c.IssuedAt.Add(-5 * time.Minute)) {
		return c, fmt.Errorf("%w: issued in the future (%s)", ErrLicense, c.IssuedAt.Format(time.RFC3339))
	}
	if !now.Before(c.ExpiresAt) {
		return c, fmt.Errorf("%w: it expired at %s", ErrLicense, c.ExpiresAt.Format(time.RFC3339))
	}
	return c, nil
}
