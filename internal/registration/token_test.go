package registration

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"

	"github.com/stackbill/stackbill/internal/arm"
)

// testKey is a stack's signing key, fixed for the tests.
func testKey(name string) ed25519.PrivateKey {
	seed := sha256.Sum256([]byte(name))
	return ed25519.NewKeyFromSeed(seed[:])
}

// signJSON signs a token given as JSON text, keeping its field names and
// casing (Azure Stack's own tokens mix PascalCase and camelCase).
func signJSON(t testing.TB, text string, key ed25519.PrivateKey) []byte {
	var tok Token
	if err := json.Unmarshal([]byte(text), &tok); err != nil {
		t.Fatal(err)
	}
	signed, _ := base64.StdEncoding.DecodeString(tok.Sign(key))
	var fields map[string]any
	_ = json.Unmarshal([]byte(text), &fields)
	var extra map[string]any
	_ = json.Unmarshal(signed, &extra)
	fields["stackKey"], fields["signature"] = extra["stackKey"], extra["signature"]
	b, _ := json.Marshal(fields)
	return b
}

func TestDecodeToken(t *testing.T) {
	t.Parallel()
	good := signJSON(t, `{"CloudId":"5BF881B2-6BE7-42A1-9F47-D6FCB6737747","objectId":"2dbdd5f4-daf3-442a-be35-b71c3debee5a","billingModel":"payasyouuse","hardwareInfo":[{"numCores":2}],"issuer":"someone","version":"1.0"}`, testKey("a"))
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawURLEncoding} {
		tok, err := DecodeToken(enc.EncodeToString(good))
		if err != nil {
			t.Fatal(err)
		}
		if tok.CloudID != "5bf881b2-6be7-42a1-9f47-d6fcb6737747" || tok.BillingModel != PayAsYouUse || !tok.UsageReporting() {
			t.Fatalf("decoded %+v", tok)
		}
	}
	f := false
	capTok := Token{CloudID: "5bf881b2-6be7-42a1-9f47-d6fcb6737747", ObjectID: "2dbdd5f4-daf3-442a-be35-b71c3debee5a", BillingModel: Capacity, AgreementNumber: "EA1"}
	if got, err := DecodeToken(capTok.Sign(testKey("a"))); err != nil || got.UsageReporting() {
		t.Fatalf("Capacity reports usage: %+v %v", got, err)
	}
	dev := Token{CloudID: capTok.CloudID, ObjectID: capTok.ObjectID, BillingModel: Development, UsageReportingEnabled: &f}
	if got, _ := DecodeToken(dev.Sign(testKey("a"))); got.UsageReporting() {
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
		// What the review found: an unsigned token carries a cloudId and
		// nothing more, so anyone who saw the cloudId could claim the stamp.
		"unsigned": {capTok.Encode(), "not signed"},
		"tampered": {tampered(capTok.Sign(testKey("a"))), "does not verify"},
		"forged key": {func() string {
			s := capTok.Sign(testKey("a"))
			raw, _ := base64.StdEncoding.DecodeString(s)
			var m map[string]any
			_ = json.Unmarshal(raw, &m)
			other, _ := base64.StdEncoding.DecodeString(capTok.Sign(testKey("b")))
			var o map[string]any
			_ = json.Unmarshal(other, &o)
			m["stackKey"] = o["stackKey"] // b's key with a's signature
			b, _ := json.Marshal(m)
			return base64.StdEncoding.EncodeToString(b)
		}(), "does not verify"},
	} {
		_, err := DecodeToken(tc.token)
		if err == nil || err.Code != "InvalidRegistrationToken" || err.Kind != arm.Invalid || !strings.Contains(err.Message, tc.want) {
			t.Errorf("%s: %v, want InvalidRegistrationToken mentioning %q", name, err, tc.want)
		}
	}
}

// tampered changes the billing model of a signed token without re-signing.
func tampered(s string) string {
	raw, _ := base64.StdEncoding.DecodeString(s)
	var m map[string]any
	_ = json.Unmarshal(raw, &m)
	m["billingModel"], m["agreementNumber"] = "PayAsYouUse", ""
	b, _ := json.Marshal(m)
	return base64.StdEncoding.EncodeToString(b)
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
	f.Add(Token{CloudID: "5bf881b2-6be7-42a1-9f47-d6fcb6737747", ObjectID: "2dbdd5f4-daf3-442a-be35-b71c3debee5a", BillingModel: Capacity, AgreementNumber: "1"}.Sign(testKey("fuzz")))
	f.Add("eyJ9")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := DecodeToken(s)
		if err != nil {
			if err.Kind != arm.Invalid || err.Code != "InvalidRegistrationToken" {
				t.Fatalf("error %+v", err)
			}
			return
		}
		if _, ok := ParseBillingModel(string(tok.BillingModel)); !ok || len(tok.CloudID) != 36 {
			t.Fatalf("accepted %+v", tok)
		}
	})
}
