package httpapi

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stackbill/stackbill/internal/auth"
	"github.com/stackbill/stackbill/internal/clock"
)

// sessionAuth signs every cookie in as a partner and refuses every bearer.
type sessionAuth struct{}

func (sessionAuth) Authenticate(context.Context, string) (auth.Principal, error) {
	return auth.Principal{}, auth.ErrInvalid
}

func (sessionAuth) Session(context.Context, string) (auth.Session, error) {
	return auth.Session{Principal: auth.Principal{Role: auth.RolePartner, TokenID: "t1", PartnerID: "fabrikam"}, CSRF: "x"}, nil
}

// TestSessionOutlivesAnonymousDeadline: a portal request carries no
// Authorization header, so it starts with the short read deadline meant for
// anonymous callers. When that deadline stayed after the session cookie
// signed the caller in, net/http's background read hit it during any page
// slower than the deadline and cancelled the request's context, and
// partners got a 500 for their largest invoices.
func TestSessionOutlivesAnonymousDeadline(t *testing.T) {
	srv := slowPortal(t)
	req, err := http.NewRequestWithContext(t.Context(), "GET", srv.URL+"/portal/invoices", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.AddCookie(&http.Cookie{Name: auth.SessionCookie, Value: "session"})
	expectPage(t, srv, req)
}

// TestAnonymousDeadlineBoundsTheBodyOnly: the sign-in form is anonymous.
// Its body must arrive within the deadline, but the work after it (a
// session written to a busy database) may take longer; cut off, it told
// partners their valid token was invalid.
func TestAnonymousDeadlineBoundsTheBodyOnly(t *testing.T) {
	srv := slowPortal(t)
	for _, body := range []io.Reader{nil, strings.NewReader("token=sbk_x&csrf=y")} {
		req, err := http.NewRequestWithContext(t.Context(), "POST", srv.URL+"/portal/login", body)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		expectPage(t, srv, req)
	}
}

const slowDeadline = 100 * time.Millisecond

// slowPortal serves a portal whose every page reads its body and then takes
// four times the anonymous deadline.
func slowPortal(t *testing.T) *httptest.Server {
	deadline := slowDeadline
	portal := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(r.Body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		select {
		case <-time.After(4 * deadline):
			_, _ = io.WriteString(w, "page")
		case <-r.Context().Done():
			http.Error(w, r.Context().Err().Error(), http.StatusInternalServerError)
		}
	})
	s := New(Config{AnonBodyTimeout: deadline}, Deps{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Registry: prometheus.NewRegistry(), Clock: clock.Real(), Auth: sessionAuth{}, Portal: portal})
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return srv
}

func expectPage(t *testing.T, srv *httptest.Server, req *http.Request) {
	t.Helper()
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "page" {
		t.Fatalf("%s %s, slower than the anonymous deadline: %d %q", req.Method, req.URL.Path, resp.StatusCode, body)
	}
}
