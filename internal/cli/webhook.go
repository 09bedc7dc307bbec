package cli

import (
	"context"
	"flag"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/stackbill/stackbill/internal/notify"
)

// runWebhook keeps the caller's webhook endpoints and reads their delivery
// logs, over the API.
func runWebhook(ctx context.Context, env Env, args []string) error {
	verb, rest, err := subcommand(args, "create", "list", "show", "update", "delete", "deliveries", "delivery", "replay", "rotate-secret")
	if err != nil {
		return err
	}
	fs := newFlags(env, "webhook "+verb)
	mk := clientFlags(fs, env)
	var urlFlag, types, desc *string
	var enable, disable *bool
	if verb == "create" || verb == "update" {
		urlFlag = fs.String("endpoint", "", "the URL deliveries are POSTed to: a public https URL")
		types = fs.String("types", "", "comma-separated event types to deliver, or * for all ("+strings.Join(notify.Types(), ", ")+"); create's default is *")
		desc = fs.String("description", "", "what the endpoint is for")
	}
	if verb == "update" {
		enable = fs.Bool("enable", false, "send deliveries to it again")
		disable = fs.Bool("disable", false, "stop sending deliveries to it (events meanwhile are not queued for it)")
	}
	o, err := parseWithOutput(fs, rest, verb != "delete")
	if err != nil {
		return err
	}
	want := map[string]int{"create": 0, "list": 0, "delivery": 2, "replay": 2}[verb]
	if verb == "show" || verb == "update" || verb == "delete" || verb == "deliveries" || verb == "rotate-secret" {
		want = 1
	}
	if fs.NArg() != want {
		return usagef("webhook %s takes %d argument(s): %s", verb, want, map[int]string{0: "none", 1: "the endpoint ID", 2: "the endpoint ID and a delivery ID"}[want])
	}
	c := mk()
	switch verb {
	case "list":
		var page struct{ Value []notify.Endpoint }
		if _, err := c.do(ctx, "GET", "/v1/webhooks", nil, &page); err != nil {
			return err
		}
		var rows [][]string
		for _, e := range page.Value {
			rows = append(rows, []string{e.ID, orDash(e.OwnerID), e.URL, strings.Join(e.Types, ","), strconv.FormatBool(e.Enabled), e.Description})
		}
		return o.print(env, []string{"id", "owner", "url", "types", "enabled", "description"}, rows, page.Value)
	case "create", "update":
		in := notify.EndpointInput{}
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		if set["endpoint"] || verb == "create" {
			in.URL = urlFlag
		}
		if set["types"] {
			ts := splitList(*types)
			in.Types = &ts
		}
		if set["description"] {
			in.Description = desc
		}
		if verb == "update" && *enable && *disable {
			return usagef("--enable and --disable contradict each other")
		}
		if verb == "update" && (*enable || *disable) {
			on := *enable
			in.Enabled = &on
		}
		method, path := "POST", "/v1/webhooks"
		if verb == "update" {
			method, path = "PATCH", "/v1/webhooks/"+url.PathEscape(fs.Arg(0))
		}
		var e notify.Endpoint
		if _, err := c.do(ctx, method, path, in, &e); err != nil {
			return err
		}
		if err := printEndpoint(env, o, e); err != nil {
			return err
		}
		if e.Secret != "" && o.format == "table" {
			fmt.Fprintln(env.Stderr, "keep the secret: it signs every delivery (webhook-signature, Standard Webhooks) and is not shown again")
		}
		return nil
	case "show":
		var e notify.Endpoint
		if _, err := c.do(ctx, "GET", "/v1/webhooks/"+url.PathEscape(fs.Arg(0)), nil, &e); err != nil {
			return err
		}
		return printEndpoint(env, o, e)
	case "rotate-secret":
		var e notify.Endpoint
		if _, err := c.do(ctx, "POST", "/v1/webhooks/"+url.PathEscape(fs.Arg(0))+"/rotate-secret", nil, &e); err != nil {
			return err
		}
		if err := printEndpoint(env, o, e); err != nil {
			return err
		}
		if o.format == "table" {
			fmt.Fprintf(env.Stderr, "keep the new secret: for %s deliveries are signed with it and the previous one, then with it alone\n", notify.RotationOverlap)
		}
		return nil
	case "delete":
		if _, err := c.do(ctx, "DELETE", "/v1/webhooks/"+url.PathEscape(fs.Arg(0)), nil, nil); err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "deleted webhook endpoint %s, with its deliveries\n", fs.Arg(0))
		return nil
	case "deliveries":
		var page struct{ Value []notify.Delivery }
		if _, err := c.do(ctx, "GET", "/v1/webhooks/"+url.PathEscape(fs.Arg(0))+"/deliveries", nil, &page); err != nil {
			return err
		}
		var rows [][]string
		for _, d := range page.Value {
			rows = append(rows, []string{strconv.FormatInt(d.ID, 10), d.EventType, d.EventID, d.State, strconv.Itoa(d.Attempts), status(d.LastStatus), orDash(deref(d.NextAttempt)), orDash(d.LastError)})
		}
		return o.print(env, []string{"delivery", "type", "event", "state", "attempts", "last status", "next attempt", "last error"}, rows, page.Value)
	}
	// delivery, replay
	path := "/v1/webhooks/" + url.PathEscape(fs.Arg(0)) + "/deliveries/" + url.PathEscape(fs.Arg(1))
	method := "GET"
	if verb == "replay" {
		method, path = "POST", path+"/replay"
	}
	var d notify.Delivery
	if _, err := c.do(ctx, method, path, nil, &d); err != nil {
		return err
	}
	fields := [][2]string{{"delivery", strconv.FormatInt(d.ID, 10)}, {"event", d.EventID + " (" + d.EventType + ")"}, {"endpoint", d.EndpointID},
		{"state", d.State}, {"attempts", strconv.Itoa(d.Attempts)}}
	if d.NextAttempt != nil {
		fields = append(fields, [2]string{"next attempt", *d.NextAttempt})
	}
	for _, a := range d.Log {
		what := status(a.Status)
		if a.Error != "" {
			what = a.Error
		}
		fields = append(fields, [2]string{fmt.Sprintf("attempt %d", a.Attempt), fmt.Sprintf("%s, %s in %d ms", a.At, what, a.DurationMs)})
	}
	return o.printFields(env, fields, d)
}

func printEndpoint(env Env, o *output, e notify.Endpoint) error {
	fields := [][2]string{{"id", e.ID}, {"owner", orDash(e.OwnerID)}, {"url", e.URL}, {"types", strings.Join(e.Types, ",")},
		{"enabled", strconv.FormatBool(e.Enabled)}, {"description", orDash(e.Description)}, {"created", e.CreatedAt + " by " + e.CreatedBy}, {"updated", e.UpdatedAt}}
	if e.Secret != "" {
		fields = append(fields, [2]string{"secret", e.Secret})
	}
	return o.printFields(env, fields, e)
}

func status(code int) string {
	if code == 0 {
		return "—"
	}
	return strconv.Itoa(code)
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// runEvents lists and shows the events the caller may see.
func runEvents(ctx context.Context, env Env, args []string) error {
	verb, rest, err := subcommand(args, "list", "show")
	if err != nil {
		return err
	}
	fs := newFlags(env, "events "+verb)
	mk := clientFlags(fs, env)
	typ := fs.String("type", "", "only events of this type (list): "+strings.Join(notify.Types(), ", "))
	after := fs.Int64("after", 0, "only events after this sequence number (list)")
	limit := fs.Int("limit", 100, "at most this many events (list, 1 to 1000)")
	o := outputFlag(fs)
	if err := parseFlags(fs, rest); err != nil {
		return err
	}
	if err := o.check(); err != nil {
		return err
	}
	if verb == "show" {
		if fs.NArg() != 1 {
			return usagef("events show takes one event ID")
		}
		var e notify.Event
		if _, err := mk().do(ctx, "GET", "/v1/events/"+url.PathEscape(fs.Arg(0)), nil, &e); err != nil {
			return err
		}
		return o.printFields(env, [][2]string{{"id", e.ID}, {"type", e.Type}, {"at", e.At.Format(time.RFC3339)}, {"subject", e.Subject},
			{"partner", orDash(e.PartnerID)}, {"reseller", orDash(e.ResellerID)}, {"data", string(e.Data)}}, e)
	}
	if fs.NArg() > 0 {
		return usagef("unexpected arguments: %v", fs.Args())
	}
	q := url.Values{"limit": {strconv.Itoa(*limit)}}
	if *typ != "" {
		q.Set("type", *typ)
	}
	if *after > 0 {
		q.Set("after", strconv.FormatInt(*after, 10))
	}
	var page struct{ Value []notify.Event }
	if _, err := mk().do(ctx, "GET", "/v1/events?"+q.Encode(), nil, &page); err != nil {
		return err
	}
	var rows [][]string
	for _, e := range page.Value {
		rows = append(rows, []string{strconv.FormatInt(e.Seq, 10), e.At.Format(time.RFC3339), e.Type, e.Subject, orDash(e.PartnerID), e.ID})
	}
	return o.print(env, []string{"seq", "at", "type", "subject", "partner", "id"}, rows, page.Value)
}
