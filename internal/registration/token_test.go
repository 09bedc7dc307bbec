package registration

import (
	"encoding/base64"
	"strings"
	"testing"
)

func TestDecodeToken(t *testing.T) {
	t.Parallel()
	good := `{"CloudId":"5BF881B2-6BE7-42A1-9F47-D6FCB6737747","objectId":"2dbdd5f4-daf3-442a-be35-b71c3debee5a","billingModel":"payasyouuse","hardwareInfo":[{"numCores":2}],"issuer":"someone","version":"1.0"}`
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawURLEncoding} {
		tok, err := DecodeToken(enc.EncodeToString([]byte(good)))
		if err != nil {
			t.Fatal(err)
		}
		if tok.CloudID != "5bf881b2-6be7-42a1-9f47-d6fcb6737747" || tok.BillingModel != PayAsYouUse || !tok.UsageReporting() {
			t.Fatalf("decoded %+v", tok)
		}
	}
	f := false
	capTok := Token{CloudID: "5bf881b2-6be7-42a1-9f47-d6fcb6737747", ObjectID: "2dbdd5f4-daf3-442a-be35-b71c3debee5a", BillingModel: Capacity, AgreementNumber: "EA1"}
	if got, err := DecodeToken(capTok.Encode()); err != nil || got.UsageReporting() {
		t.Fatalf("Capacity reports usage: %+v %v", got, err)
	}
	dev := Token{CloudID: capTok.CloudID, ObjectID: capTok.ObjectID, BillingModel: Development, UsageReportingEnabled: &f}
	if got, _ := DecodeToken(dev.Encode()); got.UsageReporting() {
		t.Fatal("explicit usageReportingEnabled=false ignored")
	}
	for name, tc := range map[string]struct{ token, want string }{
		"empty":          {"", "empty"},
		"not base64":     {"%%%", "not base64"},
		"not JSON":       {base64.StdEncoding.EncodeToString([]byte("hello")), "JSON"},
		"missing fields": {base64.StdEncoding.EncodeToString([]byte(`{"billingModel":"Capacity"}`)), "lacks cloudId, objectId"},
		"bad cloudId":    {base64.StdEncoding.EncodeToString([]byte(`{"cloudId":"x","objectId":"2dbdd5f4-daf3-442a-be35-b71c3debee5a","billingModel":"Custom"}`)), "cloudId is not a GUID"},
		"bad model":      {base64.StdEncoding.EncodeToString([]byte(`{"cloudId":"5bf881b2-6be7-42a1-9f47-d6fcb6737747","objectId":"2dbdd5f4-daf3-442a-be35-b71c3debee5a","billingModel":"Free"}`)), "not one of"},
		"no agreement":   {base64.StdEncoding.EncodeToString([]byte(`{"cloudId":"5bf881b2-6be7-42a1-9f47-d6fcb6737747","objectId":"2dbdd5f4-daf3-442a-be35-b71c3debee5a","billingModel":"Capacity"}`)), "agreementNumber"},
	} {
		_, err := DecodeToken(tc.token)
		if err == nil || err.Code != "InvalidRegistrationToken" || err.Status != 400 || !strings.Contains(err.Message, tc.want) {
			t.Errorf("%s: %v, want InvalidRegistrationToken mentioning %q", name, err, tc.want)
		}
	}
}

func TestGuidanceCoversEverySeedCode(t *testing.T) {
	t.Parallel()
	for _, code := range []string{CodeRegistrationNotFound, CodeBadCustomerSubscriptionID, CodeInvalidCustomerSubscriptionID, CodeCustomerSubscriptionNotFound,
		CodeUnauthorizedCspRegistration, CodeCustomerSubscriptionsNotAllowed, CodeInvalidCSPSubscription, CodeMetadataResolverBadGateway} {
		if Guidance(code) == "" {
			t.Errorf("no guidance for %s", code)
		}
	}
}

// FuzzDecodeToken: any input is either a valid token or a 400, never a panic.
func FuzzDecodeToken(f *testing.F) {
	f.Add(Token{CloudID: "5bf881b2-6be7-42a1-9f47-d6fcb6737747", ObjectID: "2dbdd5f4-daf3-442a-be35-b71c3debee5a", BillingModel: Capacity, AgreementNumber: "1"}.Encode())
	f.Add("eyJ9")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := DecodeToken(s)
		if err != nil {
			if err.Status != 400 || err.Code != "InvalidRegistrationToken" {
				t.Fatalf("error %+v", err)
			}
			return
		}
		if _, ok := ParseBillingModel(string(tok.BillingModel)); !ok || len(tok.CloudID) != 36 {
			t.Fatalf("accepted %+v", tok)
		}
	})
}
