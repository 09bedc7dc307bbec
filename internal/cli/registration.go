package cli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

const cliAPIVersion = "2017-06-01"

type regFlags struct {
	subscription, resourceGroup, name string
}

func (f *regFlags) bind(fs *flag.FlagSet, nameFlag string) {
	fs.StringVar(&f.subscription, "subscription", "", "the registration's (default) subscription id")
	fs.StringVar(&f.resourceGroup, "resource-group", "azurestack", "the registration's resource group")
	fs.StringVar(&f.name, nameFlag, "", "the registration name (usually azurestack-<cloudId>)")
}

func (f *regFlags) check(nameFlag string) error {
	if f.subscription == "" || f.resourceGroup == "" || f.name == "" {
		return usagef("--subscription and --%s are required (--resource-group defaults to azurestack)", nameFlag)
	}
	return nil
}

func (f *regFlags) path() string {
	return "/subscriptions/" + url.PathEscape(f.subscription) + "/resourceGroups/" + url.PathEscape(f.resourceGroup) +
		"/providers/Microsoft.AzureStack/registrations/" + url.PathEscape(f.name)
}

func withVersion(path string) string { return path + "?api-version=" + cliAPIVersion }

type regView struct {
	ID         string            `json:"id"`
	Name       string            `json:"name"`
	Etag       string            `json:"etag"`
	Tags       map[string]string `json:"tags"`
	Properties struct {
		CloudID                string     `json:"cloudId"`
		ObjectID               string     `json:"objectId"`
		BillingModel           string     `json:"billingModel"`
		AgreementNumber        string     `json:"agreementNumber"`
		UsageReportingEnabled  bool       `json:"usageReportingEnabled"`
		MultiTenancyApproved   bool       `json:"multiTenancyApproved"`
		MultiTenancyApprovedAt *time.Time `json:"multiTenancyApprovedAt"`
	} `json:"properties"`
}

func runRegistration(ctx context.Context, env Env, args []string) error {
	verb, rest, err := subcommand(args, "create", "update", "get", "list", "delete", "approve", "revoke-approval", "history", "enable-remote-management", "activation-key", "deployment-license")
	if err != nil {
		return err
	}
	if verb == "deployment-license" {
		return deploymentLicense(ctx, env, rest)
	}
	fs := newFlags(env, "registration "+verb)
	mk := clientFlags(fs, env)
	var rf regFlags
	var token, tokenFile, cloudID string
	var tags multiFlag
	if verb == "list" {
		fs.StringVar(&rf.subscription, "subscription", "", "list registrations of this subscription (the operator may omit it)")
		fs.StringVar(&rf.resourceGroup, "resource-group", "", "only this resource group")
		fs.StringVar(&cloudID, "cloud-id", "", "only the registration(s) of this cloud (CloudDeploymentID)")
	} else {
		rf.bind(fs, "name")
	}
	if verb == "create" || verb == "update" {
		fs.StringVar(&token, "registration-token", "", "the registration token printed by the stack")
		fs.StringVar(&tokenFile, "registration-token-file", "", "read the registration token from this file")
		fs.Var(&tags, "tag", "a tag key=value (repeatable)")
	}
	o, err := parseWithOutput(fs, rest, verb == "list" || verb == "get" || verb == "history")
	if err != nil {
		return err
	}
	c := mk()
	if verb == "list" {
		return listRegistrations(ctx, env, c, rf, cloudID, o)
	}
	if err := rf.check("name"); err != nil {
		return err
	}
	switch verb {
	case "create", "update":
		if tokenFile != "" {
			b, err := os.ReadFile(tokenFile)
			if err != nil {
				return err
			}
			token = strings.TrimSpace(string(b))
		}
		body := map[string]any{"location": "global"}
		if token != "" {
			body["properties"] = map[string]string{"registrationToken": token}
		} else if verb == "create" {
			return usagef("create needs --registration-token or --registration-token-file")
		}
		if len(tags) > 0 {
			t := map[string]string{}
			for _, kv := range tags {
				k, v, _ := strings.Cut(kv, "=")
				t[k] = v
			}
			body["tags"] = t
		}
		method := "PUT"
		if verb == "update" {
			method = "PATCH"
		}
		var out regView
		status, err := c.do(ctx, method, withVersion(rf.path()), body, &out)
		if err != nil {
			return err
		}
		what := "updated"
		if status == 201 {
			what = "created"
		}
		fmt.Fprintf(env.Stdout, "Registration %s %s: cloud %s, billing model %s, multi-tenancy approved: %v\n", out.Name, what, out.Properties.CloudID, out.Properties.BillingModel, out.Properties.MultiTenancyApproved)
		if !out.Properties.MultiTenancyApproved && out.Properties.BillingModel == "PayAsYouUse" {
			fmt.Fprintln(env.Stdout, "Next: ask the commerce operator to approve it for multi-tenancy, then add end customers with 'stackbill tenant add'.")
		}
		return nil
	case "get":
		var out regView
		if _, err := c.do(ctx, "GET", withVersion(rf.path()), nil, &out); err != nil {
			return err
		}
		return o.print(env, []string{"name", "cloud id", "billing model", "approved", "usage reporting", "etag"},
			[][]string{{out.Name, out.Properties.CloudID, out.Properties.BillingModel, strconv.FormatBool(out.Properties.MultiTenancyApproved),
				strconv.FormatBool(out.Properties.UsageReportingEnabled), out.Etag}}, out)
	case "delete":
		status, err := c.do(ctx, "DELETE", withVersion(rf.path()), nil, nil)
		if err != nil {
			return err
		}
		if status == 204 {
			fmt.Fprintf(env.Stdout, "Registration %s did not exist; nothing to delete.\n", rf.name)
		} else {
			fmt.Fprintf(env.Stdout, "Registration %s deleted; its tenant mappings ended. History is kept.\n", rf.name)
		}
		return nil
	case "approve", "revoke-approval":
		var out regView
		if _, err := c.do(ctx, "POST", "/v1/registrations/"+verb, map[string]string{"subscriptionId": rf.subscription, "resourceGroup": rf.resourceGroup, "name": rf.name}, &out); err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "Registration %s: multi-tenancy approved: %v\n", out.Name, out.Properties.MultiTenancyApproved)
		return nil
	case "activation-key":
		var out struct {
			ActivationKey string `json:"activationKey"`
		}
		if _, err := c.do(ctx, "POST", withVersion(rf.path()+"/getactivationkey"), nil, &out); err != nil {
			return err
		}
		fmt.Fprintln(env.Stdout, out.ActivationKey)
		return nil
	case "enable-remote-management":
		if _, err := c.do(ctx, "POST", withVersion(rf.path()+"/enableRemoteManagement"), nil, nil); err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "Remote management consent recorded on %s.\n", rf.name)
		return nil
	}
	var out struct {
		Value []struct {
			At     time.Time `json:"at"`
			Actor  string    `json:"actor"`
			Action string    `json:"action"`
			Data   any       `json:"data"`
		}
	}
	q := url.Values{"subscriptionId": {rf.subscription}, "resourceGroup": {rf.resourceGroup}, "name": {rf.name}}
	if _, err := c.do(ctx, "GET", "/v1/registrations/history?"+q.Encode(), nil, &out); err != nil {
		return err
	}
	rows := make([][]string, 0, len(out.Value))
	for _, e := range out.Value {
		rows = append(rows, []string{e.At.Format(time.RFC3339), e.Actor, e.Action, compactJSON(e.Data)})
	}
	return o.print(env, []string{"at", "actor", "action", "details"}, rows, out.Value)
}

func listRegistrations(ctx context.Context, env Env, c *client, rf regFlags, cloudID string, o *output) error {
	path := "/v1/registrations"
	q := url.Values{}
	switch {
	case rf.subscription != "" && rf.resourceGroup != "":
		path = "/subscriptions/" + url.PathEscape(rf.subscription) + "/resourceGroups/" + url.PathEscape(rf.resourceGroup) + "/providers/Microsoft.AzureStack/registrations"
		q.Set("api-version", cliAPIVersion)
	case rf.subscription != "":
		path = "/subscriptions/" + url.PathEscape(rf.subscription) + "/providers/Microsoft.AzureStack/registrations"
		q.Set("api-version", cliAPIVersion)
	}
	if cloudID != "" {
		q.Set("cloudId", cloudID)
	}
	var rows [][]string
	all := []regView{}
	next := path + "?" + q.Encode()
	for next != "" {
		var page struct {
			Value    []regView `json:"value"`
			NextLink string    `json:"nextLink"`
		}
		if _, err := c.do(ctx, "GET", next, nil, &page); err != nil {
			return err
		}
		for _, r := range page.Value {
			parts := strings.Split(r.ID, "/")
			sub, rg := "", ""
			if len(parts) > 4 {
				sub, rg = parts[2], parts[4]
			}
			rows = append(rows, []string{r.Name, sub, rg, r.Properties.CloudID, r.Properties.BillingModel, strconv.FormatBool(r.Properties.MultiTenancyApproved)})
			all = append(all, r)
		}
		next = strings.TrimPrefix(page.NextLink, c.base)
	}
	return o.print(env, []string{"name", "subscription", "resource group", "cloud id", "billing model", "approved"}, rows, all)
}

func runTenant(ctx context.Context, env Env, args []string) error {
	verb, rest, err := subcommand(args, "add", "show", "list", "remove")
	if err != nil {
		return err
	}
	fs := newFlags(env, "tenant "+verb)
	mk := clientFlags(fs, env)
	var rf regFlags
	rf.bind(fs, "registration")
	var customerSub, tenant string
	var o *output
	if verb == "list" || verb == "show" {
		o = outputFlag(fs)
	}
	if verb != "list" {
		fs.StringVar(&customerSub, "customer-subscription", "", "the end customer's CSP subscription id")
	}
	if verb == "add" {
		fs.StringVar(&tenant, "tenant", "", "the end customer's directory tenant id")
	}
	if err := parseFlags(fs, rest); err != nil {
		return err
	}
	if o != nil {
		if err := o.check(); err != nil {
			return err
		}
	}
	if err := rf.check("registration"); err != nil {
		return err
	}
	if verb != "list" && customerSub == "" {
		return usagef("--customer-subscription is required")
	}
	c := mk()
	csPath := rf.path() + "/customerSubscriptions"
	type csView struct {
		ID         string `json:"id"`
		Name       string `json:"name"`
		Properties struct {
			TenantID string `json:"tenantId"`
		} `json:"properties"`
	}
	switch verb {
	case "add":
		if tenant == "" {
			return usagef("--tenant is required")
		}
		var out csView
		if _, err := c.do(ctx, "PUT", withVersion(csPath+"/"+url.PathEscape(customerSub)), map[string]any{"properties": map[string]string{"tenantId": tenant}}, &out); err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "Tenant %s now reports usage to CSP subscription %s on registration %s.\n", out.Properties.TenantID, customerSub, rf.name)
		return nil
	case "show":
		var out csView
		if _, err := c.do(ctx, "GET", withVersion(csPath+"/"+url.PathEscape(customerSub)), nil, &out); err != nil {
			return err
		}
		return o.print(env, []string{"customer subscription", "tenant"}, [][]string{{lastSegment(out.ID), out.Properties.TenantID}}, out)
	case "remove":
		status, err := c.do(ctx, "DELETE", withVersion(csPath+"/"+url.PathEscape(customerSub)), nil, nil)
		if err != nil {
			return err
		}
		if status == 204 {
			fmt.Fprintf(env.Stdout, "%s was already removed from %s.\n", customerSub, rf.name)
		} else {
			fmt.Fprintf(env.Stdout, "Removed %s from %s: the tenant's usage goes to the default subscription %s again.\n", customerSub, rf.name, rf.subscription)
		}
		return nil
	}
	var rows [][]string
	all := []csView{}
	next := withVersion(csPath)
	for next != "" {
		var page struct {
			Value    []csView `json:"value"`
			NextLink string   `json:"nextLink"`
		}
		if _, err := c.do(ctx, "GET", next, nil, &page); err != nil {
			return err
		}
		for _, x := range page.Value {
			rows = append(rows, []string{lastSegment(x.ID), x.Properties.TenantID})
			all = append(all, x)
		}
		next = strings.TrimPrefix(page.NextLink, c.base)
	}
	return o.print(env, []string{"customer subscription", "tenant"}, rows, all)
}

// lastSegment is the last segment of an ARM resource ID: the resource's name.
func lastSegment(id string) string { return id[strings.LastIndex(id, "/")+1:] }

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func compactJSON(v any) string {
	s := fmt.Sprint(v)
	if len(s) > 120 {
		s = s[:117] + "..."
	}
	return s
}

// deploymentLicense asks commerce for a temporary deployment license
// (generateDeploymentLicense) for a stack on the partner's subscription,
// and prints it for the stack to verify (stackbill stack license).
func deploymentLicense(ctx context.Context, env Env, args []string) error {
	fs := newFlags(env, "registration deployment-license")
	mk := clientFlags(fs, env)
	sub := fs.String("subscription", "", "the partner's own (shared services or default) subscription that registers the stack")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *sub == "" {
		return usagef("--subscription is required")
	}
	var out json.RawMessage
	if _, err := mk().do(ctx, "POST", "/subscriptions/"+url.PathEscape(*sub)+"/providers/Microsoft.AzureStack/generateDeploymentLicense?api-version=2022-06-01",
		map[string]string{"verificationVersion": "latest"}, &out); err != nil {
		return err
	}
	return printJSON(env.Stdout, out)
}
