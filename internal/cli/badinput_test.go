package cli

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/stackbill/stackbill/internal/registration"
	"github.com/stackbill/stackbill/internal/store/storetest"
)

// TestBadInputChangesNothing sends malformed, oversized and invalid requests
// and checks each gets a clear 4xx in the ARM envelope and leaves the
// database exactly as it was.
func TestBadInputChangesNothing(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, backend string) {
		e := newTestEnv(t, backend)
		e.createRegistration(W.ContosoDefault, "azurestack", "payg", registration.PayAsYouUse, true)
		e.createRegistration(W.ContosoDefault, "azurestack", "capacity", registration.Capacity, false)
		reg := "/subscriptions/" + W.ContosoDefault + "/resourceGroups/azurestack/providers/Microsoft.AzureStack/registrations/"
		cs := reg + "payg/customerSubscriptions/"
		v := "?api-version=2017-06-01"
		// Tokens signed as a stack signs them, so each case meets the
		// check it is about.
		token := func(s string) string {
			var tok registration.Token
			if err := json.Unmarshal([]byte(s), &tok); err != nil {
				t.Fatal(err)
			}
			return storetest.SignedToken(tok)
		}
		goodTenant := `{"properties":{"tenantId":"` + W.Adatum.Tenant + `"}}`
		big := `{"properties":{"tenantId":"` + W.Adatum.Tenant + `"},"tags":{"x":"` + strings.Repeat("a", 2<<20) + `"}}`
		cases := []struct {
			name, method, path, ctype, body string
			status                          int
			code                            string
		}{
			{"malformed JSON", "PUT", cs + W.Adatum.Subscription + v, "application/json", `{"properties":`, 400, "InvalidRequestContent"},
			{"not an object", "PUT", cs + W.Adatum.Subscription + v, "application/json", `[1,2]`, 400, "InvalidRequestContent"},
			{"empty body", "PUT", cs + W.Adatum.Subscription + v, "application/json", ``, 400, "InvalidRequestContent"},
			{"trailing data", "PUT", cs + W.Adatum.Subscription + v, "application/json", goodTenant + `{}`, 400, "InvalidRequestContent"},
			{"unknown field", "PUT", cs + W.Adatum.Subscription + v, "application/json", `{"properties":{"tenantId":"` + W.Adatum.Tenant + `","tenant":"x"}}`, 400, "InvalidRequestContent"},
			{"unknown top-level field", "PUT", cs + W.Adatum.Subscription + v, "application/json", `{"propertiez":{}}`, 400, "InvalidRequestContent"},
			{"wrong type", "PUT", cs + W.Adatum.Subscription + v, "application/json", `{"properties":{"tenantId":42}}`, 400, "InvalidRequestContent"},
			{"missing tenantId", "PUT", cs + W.Adatum.Subscription + v, "application/json", `{"properties":{}}`, 400, "InvalidRequestContent"},
			{"tenantId not a GUID", "PUT", cs + W.Adatum.Subscription + v, "application/json", `{"properties":{"tenantId":"adatum"}}`, 400, "InvalidRequestContent"},
			{"oversized body", "PUT", cs + W.Adatum.Subscription + v, "application/json", big, 413, "RequestEntityTooLarge"},
			{"wrong content type", "PUT", cs + W.Adatum.Subscription + v, "text/plain", goodTenant, 415, "UnsupportedMediaType"},
			{"missing api-version", "PUT", cs + W.Adatum.Subscription, "application/json", goodTenant, 400, "MissingApiVersionParameter"},
			{"unknown api-version", "PUT", cs + W.Adatum.Subscription + "?api-version=2099-01-01", "application/json", goodTenant, 400, "NoRegisteredProviderFound"},
			{"bad subscription GUID", "PUT", "/subscriptions/not-a-guid/resourceGroups/rg/providers/Microsoft.AzureStack/registrations/r" + v, "application/json",
				`{"location":"global","properties":{"registrationToken":"` + token(`{"cloudId":"`+randomGUID()+`","objectId":"`+randomGUID()+`","billingModel":"Development"}`) + `"}}`, 400, "InvalidSubscriptionId"},
			{"bad customer subscription GUID", "PUT", cs + "zzz" + v, "application/json", goodTenant, 400, registration.CodeInvalidCustomerSubscriptionID},
			{"bad registration name", "PUT", reg + "bad%20name!" + v, "application/json", `{"location":"global","properties":{"registrationToken":"` +
				token(`{"cloudId":"`+randomGUID()+`","objectId":"`+randomGUID()+`","billingModel":"Development"}`) + `"}}`, 400, "InvalidResourceName"},
			{"missing location", "PUT", reg + "new" + v, "application/json", `{"properties":{"registrationToken":"x"}}`, 400, "LocationNotAvailableForResourceType"},
			{"wrong location", "PUT", reg + "new" + v, "application/json", `{"location":"westus","properties":{"registrationToken":"x"}}`, 400, "LocationNotAvailableForResourceType"},
			{"missing token", "PUT", reg + "new" + v, "application/json", `{"location":"global"}`, 400, "InvalidRequestContent"},
			{"token not base64", "PUT", reg + "new" + v, "application/json", `{"location":"global","properties":{"registrationToken":"%%%"}}`, 400, "InvalidRegistrationToken"},
			{"token not JSON", "PUT", reg + "new" + v, "application/json", `{"location":"global","properties":{"registrationToken":"` + base64JSON("hello") + `"}}`, 400, "InvalidRegistrationToken"},
			{"token lacks cloudId", "PUT", reg + "new" + v, "application/json", `{"location":"global","properties":{"registrationToken":"` +
				token(`{"objectId":"`+randomGUID()+`","billingModel":"PayAsYouUse"}`) + `"}}`, 400, "InvalidRegistrationToken"},
			{"unknown billing model", "PUT", reg + "new" + v, "application/json", `{"location":"global","properties":{"registrationToken":"` +
				token(`{"cloudId":"`+randomGUID()+`","objectId":"`+randomGUID()+`","billingModel":"Free"}`) + `"}}`, 400, "InvalidRegistrationToken"},
			{"capacity without agreement", "PUT", reg + "new" + v, "application/json", `{"location":"global","properties":{"registrationToken":"` +
				token(`{"cloudId":"`+randomGUID()+`","objectId":"`+randomGUID()+`","billingModel":"Capacity"}`) + `"}}`, 400, "InvalidRegistrationToken"},
			{"registration in unknown subscription", "PUT", "/subscriptions/" + randomGUID() + "/resourceGroups/rg/providers/Microsoft.AzureStack/registrations/r" + v, "application/json",
				`{"location":"global","properties":{"registrationToken":"` + token(`{"cloudId":"`+randomGUID()+`","objectId":"`+randomGUID()+`","billingModel":"Development"}`) + `"}}`, 404, "SubscriptionNotFound"},
			{"too many tags", "PATCH", reg + "payg" + v, "application/json", `{"tags":{` + manyTags(51) + `}}`, 400, "InvalidTag"},
			{"bad skip token", "GET", reg[:len(reg)-1] + v + "&%24skipToken=%%%", "", "", 400, "InvalidRequestContent"},
			{"skip token that is not ours", "GET", reg[:len(reg)-1] + v + "&%24skipToken=bm90anNvbg", "", "", 400, "InvalidRequestContent"},
			{"bad $top", "GET", reg[:len(reg)-1] + v + "&%24top=0", "", "", 400, "InvalidRequestContent"},
			{"etag mismatch", "PUT", cs + W.Adatum.Subscription + v, "application/json", goodTenant, 412, "PreconditionFailed"},
			{"unknown route", "GET", "/subscriptions/" + W.ContosoDefault + "/providers/Microsoft.Nope/things" + v, "", "", 404, "NotFound"},
			{"wrong method", "POST", reg + "payg" + v, "application/json", "{}", 405, "MethodNotAllowed"},
			{"bad directory import", "POST", "/v1/directory/import", "application/json", `{"partners":[{"id":"x","name":"X","type":"Nope"}]}`, 400, "InvalidDirectoryImport"},
			{"directory body/path mismatch", "PUT", "/v1/partners/a", "application/json", `{"id":"b","name":"B","type":"DirectCSP"}`, 400, "InvalidRequestContent"},
			{"approve EA registration", "POST", "/v1/registrations/approve", "application/json", `{"subscriptionId":"` + W.ContosoDefault + `","resourceGroup":"azurestack","name":"missing"}`, 404, "RegistrationNotFound"},
		}
		before := e.fingerprint()
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				var hdr []string
				if tc.code == "PreconditionFailed" {
					hdr = []string{"If-Match", `"not-the-etag"`}
				}
				resp, body := e.raw(tc.method, tc.path, e.operator, tc.ctype, strings.NewReader(tc.body), hdr...)
				if resp.StatusCode != tc.status {
					t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
				}
				var env struct {
					Error struct{ Code, Message string }
				}
				if err := json.Unmarshal([]byte(body), &env); err != nil || env.Error.Code != tc.code || env.Error.Message == "" {
					t.Fatalf("body %s: want ARM envelope with code %s", body, tc.code)
				}
				if ct := resp.Header.Get("Content-Type"); ct != "application/json; charset=utf-8" {
					t.Fatalf("Content-Type %q", ct)
				}
			})
		}
		if after := e.fingerprint(); after != before {
			t.Fatal("a rejected request changed the database")
		}
		// The same PUT with a matching If-Match succeeds; If-None-Match: * on an existing one fails.
		resp, body := e.raw("PUT", cs+W.Adatum.Subscription+v, e.operator, "application/json", strings.NewReader(goodTenant))
		if resp.StatusCode != 200 {
			t.Fatalf("PUT: %d %s", resp.StatusCode, body)
		}
		etag := resp.Header.Get("ETag")
		var out struct{ Etag string }
		_ = json.Unmarshal([]byte(body), &out)
		if resp, body = e.raw("PUT", cs+W.Adatum.Subscription+v, e.operator, "application/json", strings.NewReader(goodTenant), "If-Match", out.Etag); resp.StatusCode != 200 {
			t.Fatalf("PUT with matching If-Match: %d %s (etag header %q)", resp.StatusCode, body, etag)
		}
		if resp, _ = e.raw("PUT", cs+W.Adatum.Subscription+v, e.operator, "application/json", strings.NewReader(goodTenant), "If-None-Match", "*"); resp.StatusCode != http.StatusPreconditionFailed {
			t.Fatalf("If-None-Match: * on an existing mapping: %d", resp.StatusCode)
		}
	})
}

func manyTags(n int) string {
	var parts []string
	for i := 0; i < n; i++ {
		parts = append(parts, `"k`+strings.Repeat("x", i)+`":"v"`)
	}
	return strings.Join(parts, ",")
}
