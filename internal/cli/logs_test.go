package cli

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/stackbill/stackbill/internal/auth"
	"github.com/stackbill/stackbill/internal/store/storetest"
)

// syncBuffer is a log sink safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestNoTokensInLogs logs at debug level through valid, invalid, revoked and
// portal sign-ins, and checks that no token (nor its secret part) appears.
func TestNoTokensInLogs(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	var logs syncBuffer
	app := buildApp(t, Options{DB: storetest.DSN(t, "sqlite"), OperatorToken: "op-secret-in-env", Logger: slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	srv := httptest.NewServer(app.Handler)
	defer srv.Close()
	partner, partnerMeta, _ := app.Auth.Create(ctx, auth.RolePartner, "contoso", "", "", 0)
	revoked, meta, _ := app.Auth.Create(ctx, auth.RoleTenant, "", randomGUID(), "", 0)
	_ = app.Auth.Revoke(ctx, meta.ID)
	// The partner's secret alone follows "sbk_<id>_" and may itself hold
	// "_" (base64url): cut at the prefix, not at the last underscore, or a
	// one-letter tail is "found" in the logs by chance (as it once was).
	secret := strings.TrimPrefix(partner, "sbk_"+partnerMeta.ID+"_")
	if secret == partner || len(secret) < 16 {
		t.Fatalf("token %q has no secret after its prefix", partner)
	}
	secrets := []string{"op-secret-in-env", partner, revoked, "sbk_forged_guess", secret}
	for _, tok := range secrets[:4] {
		for _, path := range []string{"/v1/partners", "/v1/stack/info", "/metrics", "/nothing"} {
			req, _ := http.NewRequest("GET", srv.URL+path, nil)
			req.Header.Set("Authorization", "Bearer "+tok)
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
			}
		}
		if resp, err := http.PostForm(srv.URL+"/portal/login", url.Values{"token": {tok}}); err == nil {
			resp.Body.Close()
		}
	}
	out := logs.String()
	if !strings.Contains(out, `"msg":"request"`) {
		t.Fatalf("nothing was logged: %.300s", out)
	}
	for _, s := range secrets {
		if strings.Contains(out, s) {
			t.Fatalf("a token (%q…) appears in the logs", s[:min(6, len(s))])
		}
	}
}
