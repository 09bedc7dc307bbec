package cli

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/stackbill/stackbill/internal/bridge"
)

func runStack(ctx context.Context, env Env, args []string) error {
	verb, rest, err := subcommand(args, "info", "registration-token", "activate", "bridge", "license")
	if err != nil {
		return err
	}
	if verb == "bridge" {
		return stackBridge(ctx, env, rest)
	}
	fs := newFlags(env, "stack "+verb)
	dbFlag := fs.String("db", defaultDB(env), "SQLite file path or postgres:// DSN")
	var model, agreement, usageReporting, commerceURL, commerceCA, keyFile string
	o := &output{format: "table"}
	if verb == "info" || verb == "license" {
		o = outputFlag(fs)
	}
	switch verb {
	case "registration-token":
		fs.StringVar(&model, "billing-model", "", "PayAsYouUse, Capacity, Development or Custom")
		fs.StringVar(&agreement, "agreement-number", "", "the EA agreement number (Capacity)")
		fs.StringVar(&usageReporting, "usage-reporting", "", "true or false (default: the billing model's default)")
	case "activate", "license":
		fs.StringVar(&commerceURL, "commerce-url", env.Getenv("STACKBILL_COMMERCE_URL"), "commerce's URL, to fetch the keys that sign activation keys and licenses (env STACKBILL_COMMERCE_URL); default: this installation's own commerce")
		fs.StringVar(&commerceCA, "commerce-ca", "", "PEM file of the CAs to trust for commerce's certificate (default: the system's roots)")
		what := "the activation key"
		if verb == "license" {
			what = "the deployment license (JSON, as stackbill registration deployment-license prints it)"
		}
		fs.StringVar(&keyFile, "key-file", "", "read "+what+" from this file, or from stdin with -, so the secret stays off the command line and out of shell history")
	}
	if err := parseFlags(fs, rest); err != nil {
		return err
	}
	if err := o.check(); err != nil {
		return err
	}
	app, err := Build(ctx, Options{DB: *dbFlag})
	if err != nil {
		return err
	}
	defer app.Close()
	switch verb {
	case "registration-token":
		if model == "" {
			return usagef("--billing-model is required")
		}
		var ur *bool
		if usageReporting != "" {
			b, err := strconv.ParseBool(usageReporting)
			if err != nil {
				return usagef("--usage-reporting must be true or false")
			}
			ur = &b
		}
		tok, err := bridge.RegistrationToken(ctx, app.DB, model, agreement, ur)
		if err != nil {
			return usagef("%v", err)
		}
		fmt.Fprintln(env.Stdout, tok)
		return nil
	case "license":
		if keyFile == "" {
			return usagef("usage: stackbill stack license [--commerce-url URL] --key-file FILE|-")
		}
		b, err := readFileArg(env, keyFile)
		if err != nil {
			return usagef("--key-file: %v", err)
		}
		var lic bridge.DeploymentLicense
		if err := json.Unmarshal(b, &lic); err != nil {
			return usagef("the license is not the JSON generateDeploymentLicense returns: %v", err)
		}
		keys, err := commerceKeys(ctx, app, commerceURL, commerceCA)
		if err != nil {
			return err
		}
		now := app.Clock.Now()
		c, err := bridge.VerifyLicense(lic, keys, now)
		if err != nil {
			return err
		}
		return o.printFields(env, [][2]string{{"license", "valid"}, {"subscription", c.Subscription}, {"issuer", c.Issuer}, {"issued", c.IssuedAt.Format(time.RFC3339)},
			{"expires", fmt.Sprintf("%s (in %s)", c.ExpiresAt.Format(time.RFC3339), c.ExpiresAt.Sub(now).Round(time.Hour))}, {"manifest version", c.Version}}, c)
	case "activate":
		var key string
		switch {
		case keyFile != "" && fs.NArg() == 0:
			b, err := readFileArg(env, keyFile)
			if err != nil {
				return usagef("--key-file: %v", err)
			}
			key = string(b)
		case keyFile == "" && fs.NArg() == 1:
			key = fs.Arg(0)
		default:
			return usagef("usage: stackbill stack activate [--commerce-url URL] (--key-file FILE|- | ACTIVATION_KEY)")
		}
		keys, err := commerceKeys(ctx, app, commerceURL, commerceCA)
		if err != nil {
			return err
		}
		a, err := bridge.Activate(ctx, app.DB, strings.TrimSpace(key), keys, app.Clock.Now())
		if err != nil {
			return err
		}
		c := a.Claims
		fmt.Fprintf(env.Stdout, "Activated: registration %s (subscription %s, resource group %s), billing model %s, usage reporting %v, usage endpoint %s.\n",
			c.RegistrationName, c.SubscriptionID, c.ResourceGroupName, c.BillingModel, c.UsageReportingEnabled, c.UsageEndpoint)
		return nil
	}
	id, err := bridge.Identity(ctx, app.DB)
	if err != nil {
		return err
	}
	a, err := bridge.LoadActivation(ctx, app.DB)
	if err != nil {
		return err
	}
	info := struct {
		ProviderSubscription string `json:"providerSubscriptionId"`
		CloudID              string `json:"cloudId"`
		ObjectID             string `json:"objectId"`
		Activated            bool   `json:"activated"`
		Registration         string `json:"registration,omitempty"`
		BillingModel         string `json:"billingModel,omitempty"`
		UsageReporting       bool   `json:"usageReportingEnabled"`
		ActivatedAt          string `json:"activatedAt,omitempty"`
	}{ProviderSubscription: app.Tenancy.Provider(), CloudID: id.CloudID, ObjectID: id.ObjectID}
	fields := [][2]string{{"provider subscription", info.ProviderSubscription}, {"cloud id", id.CloudID}, {"object id", id.ObjectID}}
	if a == nil {
		fields = append(fields, [2]string{"activation", "not activated"})
	} else {
		info.Activated, info.Registration, info.BillingModel = true, a.Claims.RegistrationName, a.Claims.BillingModel
		info.UsageReporting, info.ActivatedAt = a.Claims.UsageReportingEnabled, a.ActivatedAt.Format(time.RFC3339)
		fields = append(fields, [2]string{"activation", fmt.Sprintf("%s (%s, usage reporting %v) since %s", a.Claims.RegistrationName, a.Claims.BillingModel,
			a.Claims.UsageReportingEnabled, info.ActivatedAt)})
	}
	return o.printFields(env, fields, info)
}

// commerceKeys fetches the keys commerce signs activation keys with: from the
// configured commerce URL (never from the key itself), or from this
// installation's own commerce when stack and commerce share a database.
func commerceKeys(ctx context.Context, app *App, commerceURL, caFile string) (bridge.JWKS, error) {
	if commerceURL == "" {
		keys, ok, err := bridge.LocalKeys(ctx, app.DB)
		if err != nil {
			return bridge.JWKS{}, err
		}
		if !ok {
			return bridge.JWKS{}, errors.New("this database holds no commerce keys; pass --commerce-url of the commerce that issued the key")
		}
		return keys, nil
	}
	// The keys come from commerce's cloud manifest (Microsoft.AzureStack's
	// cloudManifestFiles), signed with the key it carries.
	req, err := http.NewRequestWithContext(ctx, "GET", strings.TrimRight(commerceURL, "/")+"/providers/Microsoft.AzureStack/cloudManifestFiles?api-version=2022-06-01", nil)
	if err != nil {
		return bridge.JWKS{}, err
	}
	hc := &http.Client{Timeout: 15 * time.Second}
	if caFile != "" {
		pool, err := loadCAs(caFile)
		if err != nil {
			return bridge.JWKS{}, err
		}
		hc.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return bridge.JWKS{}, fmt.Errorf("fetch commerce's cloud manifest: %w", err)
	}
	defer resp.Body.Close()
	var m bridge.CloudManifest
	if resp.StatusCode != 200 || json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&m) != nil {
		return bridge.JWKS{}, fmt.Errorf("fetch commerce's cloud manifest from %s: status %d", commerceURL, resp.StatusCode)
	}
	keys, err := bridge.VerifyManifest(m)
	if err != nil {
		return bridge.JWKS{}, fmt.Errorf("commerce at %s: %w", commerceURL, err)
	}
	return keys, nil
}

// stackBridge shows the running stack's bridge status over its API.
func stackBridge(ctx context.Context, env Env, args []string) error {
	_, rest, err := subcommand(args, "status")
	if err != nil {
		return err
	}
	fs := newFlags(env, "stack bridge status")
	mk := clientFlags(fs, env)
	o := outputFlag(fs)
	if err := parseFlags(fs, rest); err != nil {
		return err
	}
	if err := o.check(); err != nil {
		return err
	}
	var st struct {
		bridge.Status
		Quarantined int64 `json:"quarantinedRecords"`
	}
	if _, err := mk().do(ctx, "GET", "/v1/stack/bridge", nil, &st); err != nil {
		return err
	}
	state := "not activated"
	switch {
	case st.Activated && st.UsageReporting:
		state = "forwarding for registration " + st.Registration
	case st.Activated:
		state = "activated (" + st.Registration + "), usage reporting off"
	}
	fields := [][2]string{{"state", state}, {"backlog", fmt.Sprintf("%d records", st.Backlog)},
		{"lag", (time.Duration(st.LagSeconds) * time.Second).String()}, {"forwarded", fmt.Sprintf("%d records", st.Forwarded)}}
	if st.ForwardedThrough != nil {
		fields = append(fields, [2]string{"complete to", st.ForwardedThrough.Format(time.RFC3339) + " (every hour reported before it is in commerce)"})
	}
	if st.LastSuccess != nil {
		fields = append(fields, [2]string{"last success", st.LastSuccess.Format(time.RFC3339)})
	}
	if st.LastError != "" {
		fields = append(fields, [2]string{"last error", st.LastError + " (" + st.LastErrorAt.Format(time.RFC3339) + ")"})
	}
	if st.Quarantined > 0 {
		fields = append(fields, [2]string{"quarantined", fmt.Sprintf("%d records held back (stackbill quarantine list)", st.Quarantined)})
	}
	return o.printFields(env, fields, st)
}
