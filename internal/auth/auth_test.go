package auth_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stackbill/stackbill/internal/auth"
	"github.com/stackbill/stackbill/internal/clock"
	"github.com/stackbill/stackbill/internal/store/storetest"
)

func TestTokens(t *testing.T) {
	storetest.Each(t, func(t *testing.T, backend string) {
		ctx := t.Context()
		db := storetest.Open(t, backend)
		clk := clock.Manual(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
		s := auth.NewService(db, clk, "env-operator")
		if p, err := s.Authenticate(ctx, "env-operator"); err != nil || p.Role != auth.RoleOperator {
			t.Fatalf("env operator: %+v %v", p, err)
		}
		tok, meta, err := s.Create(ctx, auth.RolePartner, "contoso", "", "n", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		p, err := s.Authenticate(ctx, tok)
		if err != nil || p.Role != auth.RolePartner || p.PartnerID != "contoso" || p.TokenID != meta.ID {
			t.Fatalf("Authenticate: %+v %v", p, err)
		}
		// The secret is not stored: the table holds only its hash.
		var hash string
		if err := db.QueryRowContext(ctx, `SELECT hash FROM tokens WHERE id = ?`, meta.ID).Scan(&hash); err != nil {
			t.Fatal(err)
		}
		// The secret follows "sbk_<id>_" and may itself hold "_" (base64url):
		// cut at the prefix, not at the last underscore, or a one-letter
		// tail is "found" in the hex hash by chance.
		secret := strings.TrimPrefix(tok, "sbk_"+meta.ID+"_")
		if secret == tok || len(secret) < 16 || strings.Contains(hash, secret) || len(hash) != 64 {
			t.Fatalf("stored %q for secret %q", hash, secret)
		}
		for _, bad := range []string{"", tok + "x", strings.Replace(tok, meta.ID, "aaaaaaaaaaaaaaaa", 1), "sbk_" + meta.ID, "Bearer " + tok} {
			if _, err := s.Authenticate(ctx, bad); err != auth.ErrInvalid {
				t.Errorf("Authenticate(%q) = %v", bad, err)
			}
		}
		clk.Advance(time.Hour)
		if _, err := s.Authenticate(ctx, tok); err != auth.ErrInvalid {
			t.Fatal("expired token accepted")
		}
		tok2, meta2, _ := s.Create(ctx, auth.RoleReseller, "tailspin", "", "", 0)
		if err := s.Revoke(ctx, meta2.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Authenticate(ctx, tok2); err != auth.ErrInvalid {
			t.Fatal("revoked token accepted")
		}
		if p := (auth.Principal{Role: auth.RolePartner, PartnerID: "contoso", TokenID: "abc"}); strings.Contains(p.Actor(), tok) || p.Actor() != "partner:contoso/abc" {
			t.Fatalf("Actor = %q", p.Actor())
		}
	})
}
