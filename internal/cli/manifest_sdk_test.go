package cli

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/services/azurestack/mgmt/2017-06-01/azurestack"
	"github.com/Azure/go-autorest/autorest"

	"github.com/stackbill/stackbill/internal/bridge"
	"github.com/stackbill/stackbill/internal/store/storetest"
)

// TestCloudManifestSDK reads commerce's cloud manifest with Azure's own
// CloudManifestFileClient, List and Get, on both engines: commerce's
// endpoints and the keys that sign activation keys, under a signature that
// verifies, and that stops verifying when any field is changed.
func TestCloudManifestSDK(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, backend string) {
		ctx := context.Background()
		e := newTestEnv(t, backend)
		c := azurestack.NewCloudManifestFileClientWithBaseURI(e.url, W.ContosoDefault)
		c.Authorizer = e.authorizer(e.tokens["contoso"])
		c.RetryAttempts, c.RetryDuration = 1, 0
		listed, err := c.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if listed.Properties == nil || listed.Properties.DeploymentData == nil || listed.Properties.DeploymentData.CloudManifestFileEnvironmentEndpoints == nil || listed.Name == nil {
			t.Fatalf("manifest: %+v", listed)
		}
		d := listed.Properties.DeploymentData
		if got := *d.CustomCloudArmEndpoint; got != e.url {
			t.Errorf("the ARM endpoint is %q, want %q", got, e.url)
		}
		if got := *d.ExternalDsmsEndpoint; got != e.url+"/v1/activation/keys" {
			t.Errorf("the key endpoint is %q", got)
		}
		got, err := c.Get(ctx, *listed.Name, "")
		if err != nil || *got.Properties.Signature != *listed.Properties.Signature {
			t.Fatalf("get by version %s: %v", *listed.Name, err)
		}
		if _, err := c.Get(ctx, "latest", "2026-12-01"); err != nil {
			t.Fatalf("get latest: %v", err)
		}
		// The signature covers every field, and the keys are commerce's.
		m := bridge.CloudManifest{Properties: bridge.CloudManifestProperties{Signature: *got.Properties.Signature, DeploymentData: bridge.ManifestData{
			ExternalDsmsCertificates: *d.ExternalDsmsCertificates, CustomCloudVerificationKey: *d.CustomCloudVerificationKey,
			Endpoints: bridge.ManifestEndpoints{CustomCloudArmEndpoint: *d.CustomCloudArmEndpoint, ExternalDsmsEndpoint: *d.ExternalDsmsEndpoint}}}}
		keys, err := bridge.VerifyManifest(m)
		if err != nil {
			t.Fatal(err)
		}
		own, err := e.app.Signer.JWKS(ctx)
		if err != nil || len(keys.Keys) != 1 || keys.Keys[0] != own.Keys[0] {
			t.Fatalf("the manifest's keys are not commerce's: %v", err)
		}
		tampered := m
		tampered.Properties.DeploymentData.Endpoints.CustomCloudArmEndpoint = "https://attacker.example"
		if _, err := bridge.VerifyManifest(tampered); err == nil {
			t.Error("a manifest with a changed endpoint verifies")
		}
		// Unknown versions, bad dates and a missing api-version are ARM errors.
		for _, f := range []struct {
			call   func() error
			status int
			code   string
		}{
			{func() error { _, err := c.Get(ctx, "v0-nope", ""); return err }, http.StatusNotFound, "CloudManifestFileNotFound"},
			{func() error { _, err := c.Get(ctx, "latest", "yesterday"); return err }, http.StatusBadRequest, "InvalidRequestContent"},
		} {
			err := f.call()
			de, ok := err.(autorest.DetailedError)
			if !ok || de.StatusCode != f.status || !strings.Contains(err.Error(), f.code) {
				t.Errorf("got %v, want %d %s", err, f.status, f.code)
			}
		}
		if resp, body := e.raw("GET", "/providers/Microsoft.AzureStack/cloudManifestFiles", "", "", nil); resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "MissingApiVersionParameter") {
			t.Errorf("without api-version: %d %s", resp.StatusCode, body)
		}
	})
}
