package cli

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stackbill/stackbill/internal/e2e"
	"github.com/stackbill/stackbill/internal/simulate"
	"github.com/stackbill/stackbill/internal/store/storetest"
	"github.com/stackbill/stackbill/internal/usage"
)

// testPKI is a CA and a server certificate for 127.0.0.1 it signed, written
// as PEM files.
type testPKI struct {
	caFile, certFile, keyFile string
	cert                      tls.Certificate
}

func newTestPKI(t *testing.T, name string) testPKI {
	t.Helper()
	dir := t.TempDir()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name + " CA"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "commerce"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(24 * time.Hour), IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	p := testPKI{caFile: filepath.Join(dir, "ca.pem"), certFile: filepath.Join(dir, "cert.pem"), keyFile: filepath.Join(dir, "key.pem")}
	write := func(path, typ string, b []byte) {
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(p.caFile, "CERTIFICATE", caDER)
	write(p.certFile, "CERTIFICATE", der)
	write(p.keyFile, "EC PRIVATE KEY", keyDER)
	if p.cert, err = tls.LoadX509KeyPair(p.certFile, p.keyFile); err != nil {
		t.Fatal(err)
	}
	return p
}

func (p testPKI) client(t *testing.T) *http.Client {
	pool, err := loadCAs(p.caFile)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
}

// TestServeTLS starts `stackbill serve --tls-cert --tls-key` and checks that
// it answers HTTPS to a client trusting its CA, and nothing in clear text.
func TestServeTLS(t *testing.T) {
	t.Parallel()
	pki := newTestPKI(t, "serve")
	addr := e2e.FreeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() {
		done <- Main(ctx, []string{"serve", "--addr", addr, "--db", filepath.Join(t.TempDir(), "s.db"), "--tls-cert", pki.certFile, "--tls-key", pki.keyFile},
			func(string) string { return "" }, strings.NewReader(""), io.Discard, io.Discard)
	}()
	defer func() {
		cancel()
		<-done
	}()
	var resp *http.Response
	var err error
	for i := 0; i < 100; i++ {
		if resp, err = pki.client(t).Get("https://" + addr + "/healthz"); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("HTTPS /healthz: %v %v", resp, err)
	}
	resp.Body.Close()
	if _, err := (&http.Client{Timeout: 5 * time.Second}).Get("https://" + addr + "/healthz"); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("a client without the CA connected: %v", err)
	}
	if resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + addr + "/healthz"); err == nil && resp.StatusCode == 200 {
		t.Fatal("the TLS port answered clear-text HTTP with 200")
	}
	if res := runCLI(t, nil, "serve", "--tls-cert", pki.certFile); res.code != 2 {
		t.Fatalf("--tls-cert without --tls-key: exit %d", res.code)
	}
}

// TestBridgeVerifiesCommerce forwards usage to a commerce served over TLS:
// a stack that pins commerce's CA forwards; one that pins another CA refuses
// the certificate and sends nothing.
func TestBridgeVerifiesCommerce(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	good, other := newTestPKI(t, "commerce"), newTestPKI(t, "impostor")
	com := newTestEnv(t, "sqlite")
	srv := httptest.NewUnstartedServer(com.app.Handler)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{good.cert}}
	srv.StartTLS()
	defer srv.Close()
	for i, c := range []struct {
		ca      string
		forward bool
	}{{good.caFile, true}, {other.caFile, false}} {
		stack := buildApp(t, Options{DB: storetest.DSN(t, "sqlite"), CommerceCA: c.ca})
		activateStack(t, com.app, stack, regKey(W.ContosoDefault, "azurestack", fmt.Sprintf("tls-%d", i)), srv.URL, stack.Clock.Now())
		sub, tenant := randomGUID(), randomGUID()
		onboardLocal(t, stack, tenant, sub)
		h := stack.Clock.Now().Truncate(time.Hour).Add(-3 * time.Hour)
		e := ev("e1", sub, simulate.MeterBaseVM, "2", h, h.Add(time.Hour), "/r/vm")
		if _, err := stack.Usage.IngestAt(ctx, h.Add(time.Hour), []*usage.Event{&e}); err != nil {
			t.Fatal(err)
		}
		n, err := stack.Forwarder.Step(ctx)
		switch {
		case c.forward && (err != nil || n != 1):
			t.Fatalf("pinned to commerce's CA: forwarded %d, %v", n, err)
		case !c.forward && (err == nil || !strings.Contains(err.Error(), "certificate")):
			t.Fatalf("pinned to another CA: forwarded %d, %v; want a certificate error", n, err)
		}
		if !c.forward {
			if st, _ := stack.Forwarder.Status(ctx); st.Backlog != 1 || !strings.Contains(st.LastError, "certificate") {
				t.Fatalf("status after the refused certificate: %+v", st)
			}
		}
	}
}
