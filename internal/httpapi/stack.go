package httpapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/stackbill/stackbill/internal/arm"
	"github.com/stackbill/stackbill/internal/auth"
	"github.com/stackbill/stackbill/internal/clock"
	"github.com/stackbill/stackbill/internal/meter"
	"github.com/stackbill/stackbill/internal/money"
	"github.com/stackbill/stackbill/internal/tenancy"
	"github.com/stackbill/stackbill/internal/usage"
)

const (
	apiSubscriptionsAdmin = "2015-11-01"
	apiCommerce           = "2015-06-01-preview"
)

func subscriptionsAdminVersion(r *http.Request) error {
	if _, e := arm.CheckAPIVersion(r, "MissingApiVersionParameter", apiSubscriptionsAdmin); e != nil {
		return e
	}
	return nil
}

type directoryTenantJSON struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	Type       string `json:"type"`
	Location   string `json:"location"`
	Properties struct {
		TenantID string `json:"tenantId"`
	} `json:"properties"`
}

func toDirectoryTenantJSON(providerSub, rg string, t tenancy.DirectoryTenant) directoryTenantJSON {
	out := directoryTenantJSON{ID: "/subscriptions/" + providerSub + "/resourceGroups/" + rg + "/providers/Microsoft.Subscriptions.Admin/directoryTenants/" + t.Name,
		Name: t.Name, Type: "Microsoft.Subscriptions.Admin/directoryTenants", Location: "local"}
	out.Properties.TenantID = t.TenantID
	return out
}

func (s *Server) putDirectoryTenant(w http.ResponseWriter, r *http.Request, p auth.Principal, params map[string]string) error {
	if err := subscriptionsAdminVersion(r); err != nil {
		return err
	}
	var body struct {
		ID, Name, Type, Location *string
		Tags                     map[string]string `json:"tags"`
		Properties               *struct {
			TenantID string `json:"tenantId"`
		} `json:"properties"`
	}
	if err := decodeInto(s, w, r, &body); err != nil {
		return err
	}
	if body.Properties == nil {
		return arm.InvalidRequest("properties.tenantId", "The body must contain properties.tenantId.")
	}
	t, created, err := s.deps.Tenancy.PutDirectoryTenant(r.Context(), p, params["subscriptionId"], tenancy.DirectoryTenant{Name: params["name"], TenantID: body.Properties.TenantID})
	if err != nil {
		return err
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	WriteJSON(w, status, toDirectoryTenantJSON(params["subscriptionId"], params["resourceGroup"], t))
	return nil
}

func (s *Server) getDirectoryTenant(w http.ResponseWriter, r *http.Request, p auth.Principal, params map[string]string) error {
	if err := subscriptionsAdminVersion(r); err != nil {
		return err
	}
	t, err := s.deps.Tenancy.GetDirectoryTenant(r.Context(), p, params["subscriptionId"], params["name"])
	if err != nil {
		return err
	}
	WriteJSON(w, http.StatusOK, toDirectoryTenantJSON(params["subscriptionId"], params["resourceGroup"], t))
	return nil
}

func (s *Server) listDirectoryTenants(w http.ResponseWriter, r *http.Request, p auth.Principal, params map[string]string) error {
	if err := subscriptionsAdminVersion(r); err != nil {
		return err
	}
	ts, err := s.deps.Tenancy.ListDirectoryTenants(r.Context(), p, params["subscriptionId"])
	if err != nil {
		return err
	}
	out := listJSON[directoryTenantJSON]{Value: []directoryTenantJSON{}}
	for _, t := range ts {
		out.Value = append(out.Value, toDirectoryTenantJSON(params["subscriptionId"], params["resourceGroup"], t))
	}
	WriteJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) deleteDirectoryTenant(w http.ResponseWriter, r *http.Request, p auth.Principal, params map[string]string) error {
	if err := subscriptionsAdminVersion(r); err != nil {
		return err
	}
	existed, err := s.deps.Tenancy.DeleteDirectoryTenant(r.Context(), p, params["subscriptionId"], params["name"])
	return writeDeleted(w, existed, err)
}

type userSubscriptionJSON struct {
	ID         string               `json:"id"`
	Name       string               `json:"name"`
	Type       string               `json:"type"`
	Location   string               `json:"location"`
	Properties tenancy.Subscription `json:"properties"`
}

func toUserSubscriptionJSON(providerSub string, sub tenancy.Subscription) userSubscriptionJSON {
	return userSubscriptionJSON{ID: "/subscriptions/" + providerSub + "/providers/Microsoft.Subscriptions.Admin/subscriptions/" + sub.SubscriptionID,
		Name: sub.SubscriptionID, Type: "Microsoft.Subscriptions.Admin/subscriptions", Location: "local", Properties: sub}
}

func (s *Server) putUserSubscription(w http.ResponseWriter, r *http.Request, p auth.Principal, params map[string]string) error {
	if err := subscriptionsAdminVersion(r); err != nil {
		return err
	}
	var body struct {
		ID, Name, Type, Location *string
		Tags                     map[string]string     `json:"tags"`
		Properties               *tenancy.Subscription `json:"properties"`
	}
	if err := decodeInto(s, w, r, &body); err != nil {
		return err
	}
	if body.Properties == nil {
		return arm.InvalidRequest("properties", "The body must contain properties (tenantId, owner, offerId, displayName, state).")
	}
	sub, created, err := s.deps.Tenancy.PutSubscription(r.Context(), p, params["subscriptionId"], params["id"], *body.Properties)
	if err != nil {
		return err
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	WriteJSON(w, status, toUserSubscriptionJSON(params["subscriptionId"], sub))
	return nil
}

func (s *Server) getUserSubscription(w http.ResponseWriter, r *http.Request, p auth.Principal, params map[string]string) error {
	if err := subscriptionsAdminVersion(r); err != nil {
		return err
	}
	sub, err := s.deps.Tenancy.GetSubscription(r.Context(), p, params["subscriptionId"], params["id"])
	if err != nil {
		return err
	}
	WriteJSON(w, http.StatusOK, toUserSubscriptionJSON(params["subscriptionId"], sub))
	return nil
}

func (s *Server) listUserSubscriptions(w http.ResponseWriter, r *http.Request, p auth.Principal, params map[string]string) error {
	if err := subscriptionsAdminVersion(r); err != nil {
		return err
	}
	subs, err := s.deps.Tenancy.ListSubscriptions(r.Context(), p, params["subscriptionId"])
	if err != nil {
		return err
	}
	out := listJSON[userSubscriptionJSON]{Value: []userSubscriptionJSON{}}
	for _, sub := range subs {
		out.Value = append(out.Value, toUserSubscriptionJSON(params["subscriptionId"], sub))
	}
	WriteJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) deleteUserSubscription(w http.ResponseWriter, r *http.Request, p auth.Principal, params map[string]string) error {
	if err := subscriptionsAdminVersion(r); err != nil {
		return err
	}
	changed, err := s.deps.Tenancy.DeleteSubscription(r.Context(), p, params["subscriptionId"], params["id"])
	return writeDeleted(w, changed, err)
}

func (s *Server) userSubscriptionHistory(w http.ResponseWriter, r *http.Request, p auth.Principal, params map[string]string) error {
	h, err := s.deps.Tenancy.History(r.Context(), p, s.deps.Tenancy.Provider(), params["id"])
	if err != nil {
		return err
	}
	WriteJSON(w, http.StatusOK, listJSON[tenancy.Change]{Value: nonNil(h)})
	return nil
}

func (s *Server) listMeters(w http.ResponseWriter, r *http.Request, _ auth.Principal, _ map[string]string) error {
	ms, err := s.deps.Meters.List(r.Context())
	if err != nil {
		return err
	}
	WriteJSON(w, http.StatusOK, listJSON[meter.Meter]{Value: ms})
	return nil
}

func (s *Server) putMeter(w http.ResponseWriter, r *http.Request, p auth.Principal, params map[string]string) error {
	var m meter.Meter
	if err := decodeInto(s, w, r, &m); err != nil {
		return err
	}
	if m.ID == "" {
		m.ID = params["id"]
	} else if mk, _ := meter.Normalize(m.ID); func() string { k, _ := meter.Normalize(params["id"]); return k }() != mk {
		return pathMismatch("id", params["id"], m.ID)
	}
	out, err := s.deps.Meters.Add(r.Context(), p, m)
	if err != nil {
		return err
	}
	WriteJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) stackInfo(w http.ResponseWriter, r *http.Request, _ auth.Principal, _ map[string]string) error {
	WriteJSON(w, http.StatusOK, map[string]any{
		"providerSubscriptionId": s.deps.Tenancy.Provider(),
		"time":                   s.deps.Clock.Now().Format(time.RFC3339Nano),
		"simulatedClock":         s.deps.Clock.Simulated(),
	})
	return nil
}

// postUsageEvents is the intake: NDJSON, a JSON array, or a CloudEvents
// batch. Valid events are kept and rejected ones reported by index.
func (s *Server) postUsageEvents(w http.ResponseWriter, r *http.Request, p auth.Principal, _ map[string]string) error {
	if p.Role == auth.RoleStackOperator && p.SubscriptionID != "" {
		return arm.Forbidden(p.Actor(), "usage/write", "/v1/usage/events")
	}
	contentType := r.Header.Get("Content-Type")
	body, err := readUsageBody(w, r, 32*s.cfg.MaxBodyBytes)
	if err != nil {
		return err
	}
	batch, err := s.deps.Usage.Parse(usage.FormatOf(contentType, body), body)
	if err != nil {
		return err
	}
	res, err := s.deps.Usage.IngestBatch(r.Context(), batch)
	if err != nil {
		return err
	}
	WriteJSON(w, http.StatusOK, res)
	return nil
}

func readUsageBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	ct := strings.ToLower(r.Header.Get("Content-Type"))
	if ct != "" && !strings.Contains(ct, "json") {
		return nil, arm.Errorf(arm.Unsupported, "UnsupportedMediaType",
			"The content type '%s' is not supported; send application/x-ndjson, application/json or application/cloudevents-batch+json.", r.Header.Get("Content-Type"))
	}
	// Events are checked one by one (usage.Service), not the body whole.
	return readLimited(w, r, limit)
}

type usageAggregateJSON struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	Type       string `json:"type"`
	Properties struct {
		SubscriptionID   string            `json:"subscriptionId"`
		UsageStartTime   string            `json:"usageStartTime"`
		UsageEndTime     string            `json:"usageEndTime"`
		MeterID          string            `json:"meterId"`
		MeterName        string            `json:"meterName,omitempty"`
		MeterCategory    string            `json:"meterCategory,omitempty"`
		MeterSubCategory string            `json:"meterSubCategory,omitempty"`
		MeterRegion      string            `json:"meterRegion"`
		Unit             string            `json:"unit,omitempty"`
		Quantity         money.Quantity    `json:"quantity"`
		InfoFields       map[string]string `json:"infoFields"`
		InstanceData     *string           `json:"instanceData,omitempty"`
	} `json:"properties"`
}

const azureOffsetTime = "2006-01-02T15:04:05+00:00"

func toUsageAggregateJSON(a usage.Aggregate, g usage.Granularity, admin, details bool) usageAggregateJSON {
	var out usageAggregateJSON
	ns, typ := "Microsoft.Commerce", "Microsoft.Commerce/UsageAggregate"
	if admin {
		ns, typ = "Microsoft.Commerce.Admin", "Microsoft.Commerce.Admin/UsageAggregate"
	}
	mk, _ := meter.Normalize(a.Meter.ID)
	out.Name = string(g) + "_" + mk + "_" + a.Start.Format("20060102_15") + "_" + usage.InstanceTag(a.Instance)
	out.ID = "/subscriptions/" + a.SubscriptionID + "/providers/" + ns + "/UsageAggregates/" + out.Name
	out.Type = typ
	p := &out.Properties
	p.SubscriptionID = a.SubscriptionID
	p.UsageStartTime, p.UsageEndTime = a.Start.UTC().Format(azureOffsetTime), a.End.UTC().Format(azureOffsetTime)
	p.MeterID, p.MeterName, p.MeterCategory, p.Unit = a.Meter.ID, a.Meter.Name, a.Meter.Category, a.Meter.Unit
	p.MeterRegion = "local"
	p.Quantity = a.Quantity
	p.InfoFields = map[string]string{}
	if details {
		b, _ := json.Marshal(instanceData{Resources: instanceResources{ResourceURI: a.ResourceURI, Location: a.Location,
			Tags: rawOrNull(a.Tags), AdditionalInfo: rawOrNull(a.AdditionalInfo)}})
		str := string(b)
		p.InstanceData = &str
	}
	return out
}

// instanceData is Azure's instance detail document, sent as a string of JSON.
type instanceData struct {
	Resources instanceResources `json:"Microsoft.Resources"`
}

type instanceResources struct {
	ResourceURI    string          `json:"resourceUri"`
	Location       string          `json:"location"`
	Tags           json.RawMessage `json:"tags"`
	AdditionalInfo json.RawMessage `json:"additionalInfo"`
}

func rawOrNull(r json.RawMessage) json.RawMessage {
	if len(r) == 0 {
		return json.RawMessage("null")
	}
	return r
}

// usageParams parses and validates the usage API's query parameters.
func (s *Server) usageParams(r *http.Request) (usage.Query, error) {
	if _, e := arm.CheckAPIVersion(r, "NoApiVersion", apiCommerce); e != nil {
		return usage.Query{}, e
	}
	q := r.URL.Query()
	var out usage.Query
	switch g := strings.ToLower(arm.QueryParam(q, "aggregationGranularity")); g {
	case "", "daily":
		out.Granularity = usage.Daily
	case "hourly":
		out.Granularity = usage.Hourly
	default:
		return out, arm.Errorf(arm.Invalid, "InvalidAggregationGranularity",
			"The aggregationGranularity '%s' is not valid; use Daily or Hourly.", arm.QueryParam(q, "aggregationGranularity")).WithTarget("aggregationGranularity")
	}
	var err error
	if out.Start, err = usageTime(q, "reportedStartTime", out.Granularity); err != nil {
		return out, err
	}
	if out.End, err = usageTime(q, "reportedEndTime", out.Granularity); err != nil {
		return out, err
	}
	if !out.End.After(out.Start) {
		return out, arm.Errorf(arm.Invalid, "InvalidProperty", "reportedEndTime (%s) must be after reportedStartTime (%s).",
			out.End.Format(time.RFC3339), out.Start.Format(time.RFC3339)).WithTarget("reportedEndTime")
	}
	if now := s.deps.Clock.Now(); out.End.After(now) {
		return out, arm.Errorf(arm.Invalid, "RequestEndTimeIsInFuture",
			"reportedEndTime %s is in the future (the time is now %s). Usage is reported once an hour has closed.", out.End.Format(time.RFC3339), now.Format(time.RFC3339)).WithTarget("reportedEndTime")
	}
	out.ShowDetails = true
	switch v := strings.ToLower(arm.QueryParam(q, "showDetails")); v {
	case "", "true":
	case "false":
		out.ShowDetails = false
	default:
		return out, arm.Errorf(arm.Invalid, "InvalidProperty", "showDetails must be true or false, not '%s'.", v).WithTarget("showDetails")
	}
	return out, nil
}

func usageTime(q map[string][]string, name string, g usage.Granularity) (time.Time, error) {
	raw := arm.QueryParam(q, name)
	if raw == "" {
		return time.Time{}, arm.Errorf(arm.Invalid, "InvalidProperty", "The property '%s' is missing; it is required, in UTC, on an hour boundary (midnight for Daily).", name).WithTarget(name)
	}
	// A '+' sent unencoded arrives as a space; and Azure Stack's documented
	// form ends an explicit offset with a stray 'Z' (…T18:53:11+00:00Z).
	s := strings.ReplaceAll(raw, " ", "+")
	if len(s) > 7 && strings.HasSuffix(s, "Z") && (s[len(s)-7] == '+' || s[len(s)-7] == '-') {
		s = strings.TrimSuffix(s, "Z")
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, arm.Errorf(arm.Invalid, "InvalidProperty", "The property '%s' value '%s' is not an ISO 8601 date-time.", name, raw).WithTarget(name)
	}
	t = t.UTC()
	if g == usage.Daily && !clock.IsDayStart(t) {
		return t, arm.Errorf(arm.Invalid, "InvalidProperty", "The property '%s' value '%s' must be UTC midnight for Daily aggregation.", name, raw).WithTarget(name)
	}
	if !clock.IsHourStart(t) {
		return t, arm.Errorf(arm.Invalid, "InvalidProperty", "The property '%s' value '%s' must be at the start of an hour (UTC).", name, raw).WithTarget(name)
	}
	return t, nil
}

func (s *Server) usageAggregates(admin bool) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request, p auth.Principal, params map[string]string) error {
		q, err := s.usageParams(r)
		if err != nil {
			return err
		}
		path, ok := arm.CanonicalGUID(params["subscriptionId"])
		if !ok {
			return arm.Errorf(arm.Invalid, "SubscriptionIdMissingInRequest", "The subscription identifier '%s' in the path is not valid.", params["subscriptionId"])
		}
		ctx := r.Context()
		stackOperator := (p.Role == auth.RoleStackOperator || p.Role == auth.RoleOperator) && p.SubscriptionID == ""
		subscriber := ""
		if admin {
			// The caller acts for the provider subscription in the path and
			// sees its direct tenants.
			if !stackOperator && !(p.Role == auth.RoleStackOperator && p.SubscriptionID == path) {
				return arm.Forbidden(p.Actor(), "Microsoft.Commerce.Admin/subscriberUsageAggregates/read", "/subscriptions/"+path)
			}
			direct, err := s.deps.Tenancy.DirectTenants(ctx, path)
			if err != nil {
				return err
			}
			if raw := arm.QueryParam(r.URL.Query(), "subscriberId"); raw != "" {
				subscriber, _ = arm.CanonicalGUID(raw)
				found := false
				for _, d := range direct {
					found = found || d == subscriber
				}
				if !found {
					return arm.Errorf(arm.Invalid, "SubscriberIdIsNotDirectTenant",
						"The subscriber '%s' is not a direct tenant of the provider subscription %s.", raw, path).WithTarget("subscriberId")
				}
				q.Subscriptions = []string{subscriber}
			} else {
				q.Subscriptions = direct
			}
		} else {
			sub, exists, err := s.deps.Tenancy.Lookup(ctx, path)
			if err != nil {
				return err
			}
			allowed := stackOperator || (p.Role == auth.RoleTenant && p.SubscriptionID == path) ||
				(p.Role == auth.RoleStackOperator && exists && sub.DelegatedProviderSubscriptionID == p.SubscriptionID)
			if !allowed {
				return arm.Forbidden(p.Actor(), "Microsoft.Commerce/UsageAggregates/read", "/subscriptions/"+path)
			}
			if !exists {
				return arm.Errorf(arm.NotFound, "SubscriptionNotFound", "The subscription '%s' could not be found on this stack.", path)
			}
			q.Subscriptions = []string{path}
		}
		fp := usage.Fingerprint(fmt.Sprint(admin), path, subscriber, q.Start.String(), q.End.String(), string(q.Granularity), fmt.Sprint(q.ShowDetails))
		if tok := arm.QueryParam(r.URL.Query(), "continuationToken"); tok != "" {
			var c usage.Cursor
			if e := s.tokens.Decode("continuationToken", tok, &c); e != nil || c.Query != fp {
				return arm.Errorf(arm.Invalid, "InvalidProperty",
					"The continuationToken is not valid for this query. Use the nextLink of the previous page with the same parameters.").WithTarget("continuationToken")
			}
			q.After = &c
		}
		aggs, next, err := s.deps.Usage.Aggregates(ctx, q)
		if err != nil {
			return err
		}
		out := listJSON[usageAggregateJSON]{Value: make([]usageAggregateJSON, 0, len(aggs))}
		for _, a := range aggs {
			out.Value = append(out.Value, toUsageAggregateJSON(a, q.Granularity, admin, q.ShowDetails))
		}
		if next != nil {
			next.Query = fp
			out.NextLink = arm.NextLink(r, "continuationToken", s.tokens.Encode(next))
		}
		WriteJSON(w, http.StatusOK, out)
		return nil
	}
}
