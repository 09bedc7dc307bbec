package notify

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestSignReproducesTheSpecificationVector: the Standard Webhooks reference
// implementations' published vector, so a receiver's existing library
// accepts what stackbill sends.
func TestSignReproducesTheSpecificationVector(t *testing.T) {
	got, err := Sign("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, []byte(`{"test": 2432232314}`))
	if err != nil || got != "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=" {
		t.Fatalf("Sign = %q, %v", got, err)
	}
}

// TestPolicyKeepsEndpointsOutsideTheNetwork: an endpoint is commerce making
// a request on a partner's behalf, so only public https hosts are taken,
// loopback only under the explicit flag, and the allowed-hosts list when
// one is set.
func TestPolicyKeepsEndpointsOutsideTheNetwork(t *testing.T) {
	open, lo, listed := Policy{}, Policy{AllowLoopback: true}, Policy{AllowedHosts: []string{"hooks.partner.example", ".csp.example"}}
	for _, c := range []struct {
		pol Policy
		url string
		ok  bool
	}{
		{open, "https://hooks.partner.example/stackbill", true},
		{open, "https://93.184.215.14/hook", true},
		{open, "http://hooks.partner.example/", false},            // not https
		{open, "ftp://hooks.partner.example/", false},             // not a web scheme
		{open, "https://user:pw@hooks.partner.example/", false},   // credentials in the URL
		{open, "https://127.0.0.1/", false},                       // loopback
		{open, "https://[::1]:8443/", false},                      // loopback, IPv6
		{open, "https://10.1.2.3/", false},                        // private
		{open, "https://192.168.0.10/", false},                    // private
		{open, "https://169.254.169.254/latest/meta-data", false}, // a cloud's metadata service
		{open, "https://[fe80::1]/", false},                       // link-local
		{open, "https://100.64.0.1/", false},                      // carrier-grade NAT
		{open, "https://0.0.0.0/", false},                         // unspecified
		{open, "https://[::ffff:10.0.0.1]/", false},               // private, IPv4-mapped
		{open, "https://[64:ff9b::a00:1]/", false},                // NAT64 of a private address
		{open, "https://localhost/", false},                       // a local name
		{open, "https://db.internal/", false},                     // a local name
		{open, "https://intranet/", false},                        // a single-label name
		{open, "https://hooks.partner.example/#frag", false},      // a fragment
		{open, "/relative", false},                                // not absolute
		{open, "https://" + strings.Repeat("a", 2050) + ".example/", false},
		{lo, "http://127.0.0.1:9000/hook", true},
		{lo, "https://[::1]:9000/hook", true},
		{lo, "http://10.0.0.1/", false}, // the flag admits loopback only
		{listed, "https://hooks.partner.example/x", true},
		{listed, "https://a.csp.example/x", true},
		{listed, "https://csp.example.evil.example/x", false},
		{listed, "https://other.example/x", false},
	} {
		err := c.pol.checkURL(c.url)
		if (err == nil) != c.ok {
			t.Errorf("%+v %.60s: %v, want ok=%v", c.pol, c.url, err, c.ok)
		}
	}
}

// TestSenderChecksTheAddressItDials: the sender's client refuses to
// connect to an address the policy does not admit, whatever name led
// there (a public name can resolve, or be re-pointed, to an inside
// address after the endpoint was checked), and follows no redirect.
func TestSenderChecksTheAddressItDials(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/redirect" {
			http.Redirect(w, r, "http://169.254.169.254/", http.StatusFound)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	if _, err := guardedClient(Policy{}, time.Second).Get(srv.URL); err == nil || !strings.Contains(err.Error(), "not public") {
		t.Fatalf("without the loopback flag the client reached %s: %v", srv.URL, err)
	}
	resp, err := guardedClient(Policy{AllowLoopback: true}, time.Second).Get(srv.URL + "/redirect")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("the client followed a redirect: %d", resp.StatusCode)
	}
}

// FuzzCheckURL: no text makes the policy panic, and whatever it accepts
// (without the loopback flag) is an https URL whose host, if an address,
// is public.
func FuzzCheckURL(f *testing.F) {
	for _, s := range []string{"https://hooks.partner.example/x", "https://127.0.0.1/", "http://[::1]/", "https://[::ffff:169.254.169.254]/", "https://a..b/", "https://%31%32%37.0.0.1/", "https://0x7f.1/", "https://2130706433/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		if (Policy{}).checkURL(raw) != nil {
			return
		}
		u, err := url.Parse(raw)
		if err != nil || u.Scheme != "https" {
			t.Fatalf("accepted %q", raw)
		}
		if ip, err := netip.ParseAddr(strings.Trim(u.Hostname(), "[]")); err == nil && !publicAddr(ip) {
			t.Fatalf("accepted the inside address %q", raw)
		}
	})
}
