package httpapi

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/stackbill/stackbill/internal/arm"
	"github.com/stackbill/stackbill/internal/auth"
	"github.com/stackbill/stackbill/internal/directory"
	"github.com/stackbill/stackbill/internal/registration"
)

// API versions of Microsoft.AzureStack that stackbill serves. Registrations
// and customerSubscriptions are the same in all three; the preview adds
// systemData.
const (
	apiV2017    = "2017-06-01"
	apiPreview  = "2020-06-01-preview"
	apiV2022    = "2022-06-01"
	maxTags     = 50
	skipTokenQP = "$skipToken"
)

var azureStackVersions = []string{apiV2017, apiPreview, apiV2022}

func azureStackVersion(r *http.Request) (string, error) {
	v, e := arm.CheckAPIVersion(r, "MissingApiVersionParameter", azureStackVersions...)
	if e != nil {
		return "", e
	}
	return v, nil
}

func keyOf(params map[string]string) registration.Key {
	return registration.Key{SubscriptionID: params["subscriptionId"], ResourceGroup: params["resourceGroup"], Name: params["registrationName"]}
}

func precondition(r *http.Request) registration.Precondition {
	return registration.Precondition{IfMatch: strings.TrimSpace(r.Header.Get("If-Match")), IfNoneMatch: strings.TrimSpace(r.Header.Get("If-None-Match"))}
}

type systemData struct {
	CreatedBy          string `json:"createdBy"`
	CreatedByType      string `json:"createdByType"`
	CreatedAt          string `json:"createdAt"`
	LastModifiedBy     string `json:"lastModifiedBy"`
	LastModifiedByType string `json:"lastModifiedByType"`
	LastModifiedAt     string `json:"lastModifiedAt"`
}

func actorType(actor string) string {
	if strings.HasPrefix(actor, "bridge") || strings.HasPrefix(actor, "usage-writer") {
		return "Application"
	}
	return "User"
}

func newSystemData(createdBy string, createdAt time.Time, modBy string, modAt time.Time) *systemData {
	return &systemData{CreatedBy: createdBy, CreatedByType: actorType(createdBy), CreatedAt: createdAt.Format(time.RFC3339Nano),
		LastModifiedBy: modBy, LastModifiedByType: actorType(modBy), LastModifiedAt: modAt.Format(time.RFC3339Nano)}
}

type registrationProps struct {
	ObjectID                      string     `json:"objectId"`
	CloudID                       string     `json:"cloudId"`
	BillingModel                  string     `json:"billingModel"`
	AgreementNumber               string     `json:"agreementNumber,omitempty"`
	UsageReportingEnabled         bool       `json:"usageReportingEnabled"`
	MarketplaceSyndicationEnabled bool       `json:"marketplaceSyndicationEnabled"`
	MultiTenancyApproved          bool       `json:"multiTenancyApproved"`
	MultiTenancyApprovedAt        *time.Time `json:"multiTenancyApprovedAt,omitempty"`
	RemoteManagementEnabled       bool       `json:"remoteManagementEnabled"`
	RemoteManagementEnabledAt     *time.Time `json:"remoteManagementEnabledAt,omitempty"`
	ProvisioningState             string     `json:"provisioningState"`
}

type registrationJSON struct {
	ID         string            `json:"id"`
	Name       string            `json:"name"`
	Type       string            `json:"type"`
	Location   string            `json:"location"`
	Tags       map[string]string `json:"tags"`
	Etag       string            `json:"etag"`
	SystemData *systemData       `json:"systemData,omitempty"`
	Properties registrationProps `json:"properties"`
}

func toRegistrationJSON(reg registration.Registration, version string) registrationJSON {
	out := registrationJSON{
		ID: reg.Key.ResourceID(), Name: reg.Key.Name, Type: "Microsoft.AzureStack/registrations", Location: reg.Location, Tags: reg.Tags, Etag: reg.ETag,
		Properties: registrationProps{
			ObjectID: reg.ObjectID, CloudID: reg.CloudID, BillingModel: string(reg.BillingModel), AgreementNumber: reg.AgreementNumber,
			UsageReportingEnabled: reg.UsageReportingEnabled, MarketplaceSyndicationEnabled: reg.MarketplaceSyndicationEnabled,
			MultiTenancyApproved: reg.Approved, MultiTenancyApprovedAt: reg.ApprovedAt,
			RemoteManagementEnabled: reg.RemoteManagementAt != nil, RemoteManagementEnabledAt: reg.RemoteManagementAt,
			ProvisioningState: "Succeeded",
		},
	}
	if out.Tags == nil {
		out.Tags = map[string]string{}
	}
	if version == apiPreview {
		out.SystemData = newSystemData(reg.CreatedBy, reg.CreatedAt, reg.UpdatedBy, reg.UpdatedAt)
	}
	return out
}

// readOnlyEcho holds the read-only fields of an ARM resource, which clients
// may send back from a GET; they are accepted and ignored.
type readOnlyEcho struct {
	ID         *string     `json:"id"`
	Name       *string     `json:"name"`
	Type       *string     `json:"type"`
	Etag       *string     `json:"etag"`
	SystemData *systemData `json:"systemData"`
}

// writePage writes one page of an ARM list with its absolute nextLink.
func writePage[T, J any](w http.ResponseWriter, r *http.Request, tokens arm.Tokens, items []T, next string, conv func(T) J) {
	out := listJSON[J]{Value: make([]J, 0, len(items))}
	for _, it := range items {
		out.Value = append(out.Value, conv(it))
	}
	if next != "" {
		out.NextLink = arm.NextLink(r, skipTokenQP, tokens.Encode(skipCursor{After: next}))
	}
	WriteJSON(w, http.StatusOK, out)
}

// registrationBody is the PUT/PATCH body (RegistrationParameter). Read-only
// fields a client may echo back from a GET are accepted and ignored; any
// other field is rejected so that typos do not pass silently.
type registrationBody struct {
	readOnlyEcho
	Kind       *string           `json:"kind"`
	Location   *string           `json:"location"`
	Tags       map[string]string `json:"tags"`
	Properties *struct {
		RegistrationToken *string `json:"registrationToken"`
		registrationProps
	} `json:"properties"`
}

func decodeRegistrationBody(w http.ResponseWriter, r *http.Request, limit int64) (registration.PutInput, error) {
	raw, err := readBody(w, r, limit)
	if err != nil {
		return registration.PutInput{}, err
	}
	var body registrationBody
	if err := decodeStrict(raw, &body); err != nil {
		return registration.PutInput{}, err
	}
	in := registration.PutInput{Location: body.Location, Tags: body.Tags}
	if body.Properties != nil {
		in.Token = body.Properties.RegistrationToken
	}
	if len(body.Tags) > maxTags {
		return in, arm.Errorf(arm.Invalid, "InvalidTag", "A resource can have at most %d tags; the request has %d.", maxTags, len(body.Tags)).WithTarget("tags")
	}
	for k, v := range body.Tags {
		if k == "" || len(k) > 512 || len(v) > 256 {
			return in, arm.Errorf(arm.Invalid, "InvalidTag", "Tag names must be 1-512 characters and values at most 256 characters; '%.40s' is not.", k).WithTarget("tags")
		}
	}
	return in, nil
}

func (s *Server) putRegistration(w http.ResponseWriter, r *http.Request, p auth.Principal, params map[string]string) error {
	v, err := azureStackVersion(r)
	if err != nil {
		return err
	}
	in, err := decodeRegistrationBody(w, r, s.cfg.MaxBodyBytes)
	if err != nil {
		return err
	}
	reg, created, err := s.deps.Registrations.Put(r.Context(), p, keyOf(params), in, precondition(r))
	if err != nil {
		return err
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	WriteJSON(w, status, toRegistrationJSON(reg, v))
	return nil
}

func (s *Server) patchRegistration(w http.ResponseWriter, r *http.Request, p auth.Principal, params map[string]string) error {
	v, err := azureStackVersion(r)
	if err != nil {
		return err
	}
	in, err := decodeRegistrationBody(w, r, s.cfg.MaxBodyBytes)
	if err != nil {
		return err
	}
	reg, err := s.deps.Registrations.Patch(r.Context(), p, keyOf(params), in, precondition(r))
	if err != nil {
		return err
	}
	WriteJSON(w, http.StatusOK, toRegistrationJSON(reg, v))
	return nil
}

func (s *Server) getRegistration(w http.ResponseWriter, r *http.Request, p auth.Principal, params map[string]string) error {
	v, err := azureStackVersion(r)
	if err != nil {
		return err
	}
	reg, err := s.deps.Registrations.Get(r.Context(), p, keyOf(params))
	if err != nil {
		return err
	}
	w.Header().Set("ETag", reg.ETag)
	WriteJSON(w, http.StatusOK, toRegistrationJSON(reg, v))
	return nil
}

func (s *Server) deleteRegistration(w http.ResponseWriter, r *http.Request, p auth.Principal, params map[string]string) error {
	if _, err := azureStackVersion(r); err != nil {
		return err
	}
	existed, err := s.deps.Registrations.Delete(r.Context(), p, keyOf(params), precondition(r))
	return writeDeleted(w, existed, err)
}

type skipCursor struct {
	After string `json:"a"`
}

func (s *Server) pageParams(r *http.Request) (string, int, error) {
	q := r.URL.Query()
	limit := s.cfg.PageSize
	if top := arm.QueryParam(q, "$top"); top != "" {
		n, err := strconv.Atoi(top)
		if err != nil || n < 1 || n > 1000 {
			return "", 0, arm.InvalidRequest("$top", "$top must be a whole number from 1 to 1000; got '%s'.", top)
		}
		limit = n
	}
	var cur skipCursor
	if tok := arm.QueryParam(q, skipTokenQP); tok != "" {
		if e := s.tokens.Decode(skipTokenQP, tok, &cur); e != nil {
			return "", 0, e
		}
	}
	return cur.After, limit, nil
}

type listJSON[T any] struct {
	Value    []T    `json:"value"`
	NextLink string `json:"nextLink,omitempty"`
}

func (s *Server) listRegistrations(w http.ResponseWriter, r *http.Request, p auth.Principal, params map[string]string) error {
	v, err := azureStackVersion(r)
	if err != nil {
		return err
	}
	return s.registrationPage(w, r, p, registration.ListQuery{SubscriptionID: params["subscriptionId"], ResourceGroup: params["resourceGroup"]}, v)
}

// registrationPage lists one page of registrations, filtered by cloudId
// when the query asks.
func (s *Server) registrationPage(w http.ResponseWriter, r *http.Request, p auth.Principal, q registration.ListQuery, version string) error {
	after, limit, err := s.pageParams(r)
	if err != nil {
		return err
	}
	q.After, q.Limit, q.CloudID = after, limit, cloudIDFilter(r)
	regs, next, err := s.deps.Registrations.List(r.Context(), p, q)
	if err != nil {
		return err
	}
	writePage(w, r, s.tokens, regs, next, func(reg registration.Registration) registrationJSON { return toRegistrationJSON(reg, version) })
	return nil
}

// cloudIDFilter reads ?cloudId=X or the OData form
// $filter=properties/cloudId eq 'X', so an operator can find the registration
// of a given cloud (its CloudDeploymentID).
func cloudIDFilter(r *http.Request) string {
	q := r.URL.Query()
	if c := arm.QueryParam(q, "cloudId"); c != "" {
		return c
	}
	f := arm.QueryParam(q, "$filter")
	if f == "" {
		return ""
	}
	lhs, rhs, ok := strings.Cut(f, " eq ")
	if !ok || !strings.EqualFold(strings.TrimSpace(lhs), "properties/cloudId") {
		return ""
	}
	return strings.Trim(strings.TrimSpace(rhs), "'")
}

func (s *Server) enableRemoteManagement(w http.ResponseWriter, r *http.Request, p auth.Principal, params map[string]string) error {
	// The spec declares no api-version for this action, so a generated client
	// may omit it; when one is given it must be valid.
	if r.URL.Query().Get("api-version") != "" {
		if _, err := azureStackVersion(r); err != nil {
			return err
		}
	}
	if err := s.deps.Registrations.EnableRemoteManagement(r.Context(), p, keyOf(params)); err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	return nil
}

func (s *Server) getActivationKey(w http.ResponseWriter, r *http.Request, p auth.Principal, params map[string]string) error {
	if _, err := azureStackVersion(r); err != nil {
		return err
	}
	key, err := s.deps.Activation.ActivationKey(r.Context(), p, keyOf(params), arm.BaseURL(r))
	if err != nil {
		return err
	}
	WriteJSON(w, http.StatusOK, map[string]string{"activationKey": key})
	return nil
}

type customerSubscriptionJSON struct {
	ID         string      `json:"id"`
	Name       string      `json:"name"`
	Type       string      `json:"type"`
	Etag       string      `json:"etag"`
	SystemData *systemData `json:"systemData,omitempty"`
	Properties struct {
		TenantID string `json:"tenantId"`
	} `json:"properties"`
}

func toCustomerSubscriptionJSON(cs registration.CustomerSubscription, version string) customerSubscriptionJSON {
	out := customerSubscriptionJSON{
		ID: cs.Registration.ResourceID() + "/customerSubscriptions/" + cs.ID, Name: cs.Registration.Name + "/" + cs.ID,
		Type: "Microsoft.AzureStack/registrations/customerSubscriptions", Etag: cs.ETag,
	}
	out.Properties.TenantID = cs.TenantID
	if version == apiPreview {
		out.SystemData = newSystemData(cs.CreatedBy, cs.CreatedAt, cs.CreatedBy, cs.CreatedAt)
	}
	return out
}

// customerSubscriptionBody is the PUT body; read-only fields may be echoed.
type customerSubscriptionBody struct {
	readOnlyEcho
	Properties *struct {
		TenantID *string `json:"tenantId"`
	} `json:"properties"`
}

func (s *Server) putCustomerSubscription(w http.ResponseWriter, r *http.Request, p auth.Principal, params map[string]string) error {
	v, err := azureStackVersion(r)
	if err != nil {
		return err
	}
	raw, err := readBody(w, r, s.cfg.MaxBodyBytes)
	if err != nil {
		return err
	}
	var body customerSubscriptionBody
	if err := decodeStrict(raw, &body); err != nil {
		return err
	}
	if body.Properties == nil || body.Properties.TenantID == nil {
		return arm.InvalidRequest("properties.tenantId", "The request body must contain properties.tenantId, the customer's directory tenant.")
	}
	pre := precondition(r)
	if pre.IfMatch == "" && body.Etag != nil && *body.Etag != "" {
		pre.IfMatch = *body.Etag // ARM templates carry the etag in the body
	}
	cs, err := s.deps.Registrations.PutCustomerSubscription(r.Context(), p, keyOf(params), params["customerSubscriptionName"], *body.Properties.TenantID, pre)
	if err != nil {
		return err
	}
	// Always 200: SDK clients generated from the swagger reject a 201 here.
	WriteJSON(w, http.StatusOK, toCustomerSubscriptionJSON(cs, v))
	return nil
}

func (s *Server) getCustomerSubscription(w http.ResponseWriter, r *http.Request, p auth.Principal, params map[string]string) error {
	v, err := azureStackVersion(r)
	if err != nil {
		return err
	}
	cs, err := s.deps.Registrations.GetCustomerSubscription(r.Context(), p, keyOf(params), params["customerSubscriptionName"])
	if err != nil {
		return err
	}
	w.Header().Set("ETag", cs.ETag)
	WriteJSON(w, http.StatusOK, toCustomerSubscriptionJSON(cs, v))
	return nil
}

func (s *Server) listCustomerSubscriptions(w http.ResponseWriter, r *http.Request, p auth.Principal, params map[string]string) error {
	v, err := azureStackVersion(r)
	if err != nil {
		return err
	}
	after, limit, err := s.pageParams(r)
	if err != nil {
		return err
	}
	items, next, err := s.deps.Registrations.ListCustomerSubscriptions(r.Context(), p, keyOf(params), after, limit)
	if err != nil {
		return err
	}
	writePage(w, r, s.tokens, items, next, func(cs registration.CustomerSubscription) customerSubscriptionJSON {
		return toCustomerSubscriptionJSON(cs, v)
	})
	return nil
}

func (s *Server) deleteCustomerSubscription(w http.ResponseWriter, r *http.Request, p auth.Principal, params map[string]string) error {
	if _, err := azureStackVersion(r); err != nil {
		return err
	}
	existed, err := s.deps.Registrations.DeleteCustomerSubscription(r.Context(), p, keyOf(params), params["customerSubscriptionName"], precondition(r))
	return writeDeleted(w, existed, err)
}

type operationJSON struct {
	Name    string `json:"name"`
	Display struct {
		Provider    string `json:"provider"`
		Resource    string `json:"resource"`
		Operation   string `json:"operation"`
		Description string `json:"description"`
	} `json:"display"`
	Origin string `json:"origin"`
}

// listOperations answers Operations_List with the RBAC operations of the
// Microsoft.AzureStack provider that stackbill implements.
func (s *Server) listOperations(w http.ResponseWriter, r *http.Request, _ auth.Principal, _ map[string]string) error {
	if _, err := azureStackVersion(r); err != nil {
		return err
	}
	ops := [][3]string{
		{"Microsoft.AzureStack/Operations/read", "Operations", "Lists the operations of the Azure Stack resource provider."},
		{"Microsoft.AzureStack/register/action", "Azure Stack", "Registers a subscription with the Azure Stack resource provider."},
		{"Microsoft.AzureStack/registrations/read", "Registrations", "Gets or lists Azure Stack registrations."},
		{"Microsoft.AzureStack/registrations/write", "Registrations", "Creates or updates an Azure Stack registration."},
		{"Microsoft.AzureStack/registrations/delete", "Registrations", "Deletes an Azure Stack registration."},
		{"Microsoft.AzureStack/registrations/getActivationKey/action", "Registrations", "Gets the activation key of an Azure Stack registration."},
		{"Microsoft.AzureStack/registrations/customerSubscriptions/read", "Customer subscriptions", "Gets or lists the customer subscriptions of a registration."},
		{"Microsoft.AzureStack/registrations/customerSubscriptions/write", "Customer subscriptions", "Adds a customer subscription to a registration."},
		{"Microsoft.AzureStack/registrations/customerSubscriptions/delete", "Customer subscriptions", "Removes a customer subscription from a registration."},
	}
	out := listJSON[operationJSON]{}
	for _, o := range ops {
		var j operationJSON
		j.Name, j.Origin = o[0], "user,system"
		j.Display.Provider, j.Display.Resource, j.Display.Description = "Azure Stack Resource Provider", o[1], o[2]
		j.Display.Operation = o[2]
		out.Value = append(out.Value, j)
	}
	WriteJSON(w, http.StatusOK, out)
	return nil
}

// productsOutOfScope answers Microsoft.AzureStack's products operations
// (Marketplace syndication: downloading Azure Marketplace items to a
// stamp), which stackbill, a billing system, does not serve.
func (s *Server) productsOutOfScope(w http.ResponseWriter, r *http.Request, p auth.Principal, params map[string]string) error {
	return arm.Errorf(arm.Invalid, "MarketplaceSyndicationNotSupported",
		"stackbill serves registration, customer subscriptions and billing of Microsoft.AzureStack; Marketplace syndication (registrations/%s/products) is out of its scope. Use the Azure Stack Hub administrator portal's Marketplace management against Azure.", params["registrationName"])
}

// cloudManifest serves Microsoft.AzureStack's cloudManifestFiles: commerce's
// endpoints and activation-key verification keys, signed. It is open to
// anyone, as the keys are: a stack reads it before it holds a credential.
// The version is the signing key's ID; versionCreationDate, when given,
// must be a date.
func (s *Server) cloudManifest(w http.ResponseWriter, r *http.Request, _ auth.Principal, params map[string]string) error {
	if _, err := azureStackVersion(r); err != nil {
		return err
	}
	if v := r.URL.Query().Get("versionCreationDate"); v != "" {
		if _, err := time.Parse(time.RFC3339, v); err != nil {
			if _, err := time.Parse("2006-01-02", v); err != nil {
				return arm.InvalidRequest("versionCreationDate", "versionCreationDate '%s' is not a date.", v)
			}
		}
	}
	m, err := s.deps.Signer.Manifest(r.Context(), s.baseURL(r))
	if err != nil {
		return err
	}
	if v, ok := params["verificationVersion"]; ok && v != m.Name && v != "latest" {
		return arm.Errorf(arm.NotFound, "CloudManifestFileNotFound", "There is no cloud manifest of version '%s'; the current version is %s.", v, m.Name)
	}
	WriteJSON(w, http.StatusOK, m)
	return nil
}

// generateDeploymentLicense signs a temporary deployment license for a
// stack on the subscription (api-version 2022-06-01 only, as the specs
// define it). A partner asks for its own subscriptions (shared services or
// default), the operator for any; an end customer's is refused, and one
// outside the caller's scope answers as if it did not exist.
func (s *Server) generateDeploymentLicense(w http.ResponseWriter, r *http.Request, p auth.Principal, params map[string]string) error {
	if _, e := arm.CheckAPIVersion(r, "MissingApiVersionParameter", apiV2022); e != nil {
		return e
	}
	var body struct {
		VerificationVersion *string `json:"verificationVersion"`
	}
	if err := decodeInto(s, w, r, &body); err != nil {
		return err
	}
	ctx := r.Context()
	m, err := s.deps.Signer.Manifest(ctx, s.baseURL(r))
	if err != nil {
		return err
	}
	switch {
	case body.VerificationVersion == nil || *body.VerificationVersion == "":
		return arm.InvalidRequest("verificationVersion", "verificationVersion is required: the cloud manifest version (cloudManifestFiles), currently %s.", m.Name)
	case *body.VerificationVersion != m.Name && *body.VerificationVersion != "latest":
		return arm.InvalidRequest("verificationVersion", "verificationVersion '%s' is not the cloud manifest's version, %s.", *body.VerificationVersion, m.Name)
	}
	sub, ok := arm.CanonicalGUID(params["subscriptionId"])
	if !ok {
		return arm.Errorf(arm.Invalid, "InvalidSubscriptionId", "The subscription identifier '%s' is not valid.", params["subscriptionId"])
	}
	notFound := arm.Errorf(arm.NotFound, "SubscriptionNotFound", "The subscription '%s' could not be found.", params["subscriptionId"])
	rs, err := s.deps.Directory.Resolve(ctx, sub)
	if errors.Is(err, directory.ErrNotFound) || arm.Is(err, arm.NotFound) {
		return notFound
	}
	if err != nil {
		return err
	}
	if p.Role != auth.RoleOperator && !(p.Role == auth.RolePartner && rs.RollsUpTo == p.PartnerID) {
		return notFound
	}
	if rs.CustomerTenantID != "" {
		return arm.Errorf(arm.Invalid, "InvalidSubscriptionForLicense",
			"Subscription '%s' is an end customer's: deployment licenses are issued to the partner's own (shared services or default) subscription that registers the stack.", params["subscriptionId"])
	}
	lic, err := s.deps.Signer.License(ctx, strings.ToLower(sub), m.Properties.DeploymentData.Endpoints.CustomCloudArmEndpoint, s.deps.Clock.Now())
	if err != nil {
		return err
	}
	WriteJSON(w, http.StatusOK, lic)
	return nil
}
