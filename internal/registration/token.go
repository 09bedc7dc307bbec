package registration

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/stackbill/stackbill/internal/arm"
)

// BillingModel is how a registered stack is billed.
type BillingModel string

const (
	PayAsYouUse BillingModel = "PayAsYouUse"
	Capacity    BillingModel = "Capacity"
	Development BillingModel = "Development"
	Custom      BillingModel = "Custom"
)

// ParseBillingModel accepts the four models case-insensitively.
func ParseBillingModel(s string) (BillingModel, bool) {
	for _, m := range []BillingModel{PayAsYouUse, Capacity, Development, Custom} {
		if strings.EqualFold(s, string(m)) {
			return m, true
		}
	}
	return "", false
}

// DefaultUsageReporting is each model's default for usage reporting, as
// RegisterWithAzure.psm1 sets it: Capacity and Custom registrations do not
// report usage unless told to.
func DefaultUsageReporting(m BillingModel) bool {
	return m == PayAsYouUse || m == Development
}

// Token is the content of a registration token: base64 of a JSON object that
// the stack generates (reference §2.5).
//
// stackbill's stacks sign their tokens: StackKey is the stack's Ed25519
// public key, generated once with its cloudId and kept beside it, and
// Signature covers every field that decides how the stack is billed. The
// first registration of a cloud binds the cloud to its key, and every later
// token for that cloud must be signed by it, so a cloudId seen in a log or a
// portal is not enough to claim a stamp. Clients handle the token as an
// opaque string, so the Azure SDKs' flow is unchanged.
type Token struct {
	CloudID                       string          `json:"cloudId"`
	ObjectID                      string          `json:"objectId"`
	BillingModel                  BillingModel    `json:"billingModel"`
	AgreementNumber               string          `json:"agreementNumber,omitempty"`
	UsageReportingEnabled         *bool           `json:"usageReportingEnabled,omitempty"`
	MarketplaceSyndicationEnabled *bool           `json:"marketplaceSyndicationEnabled,omitempty"`
	HardwareInfo                  json.RawMessage `json:"hardwareInfo,omitempty"`
	Issuer                        string          `json:"issuer,omitempty"`
	Version                       string          `json:"version,omitempty"`
	MsAssetTag                    string          `json:"msAssetTag,omitempty"`
	StackKey                      string          `json:"stackKey,omitempty"`
	Signature                     string          `json:"signature,omitempty"`
}

// signedMessage is what a token's signature covers: a fixed prefix and the
// billing-relevant fields in canonical form, each length-prefixed so that no
// two different tokens sign alike.
func (t Token) signedMessage() []byte {
	cloud, _ := arm.CanonicalGUID(t.CloudID)
	object, _ := arm.CanonicalGUID(t.ObjectID)
	model, _ := ParseBillingModel(string(t.BillingModel))
	opt := func(b *bool) string {
		if b == nil {
			return ""
		}
		return strconv.FormatBool(*b)
	}
	var b []byte
	for _, f := range []string{"stackbill-registration-token/1", cloud, object, string(model), strings.TrimSpace(t.AgreementNumber),
		opt(t.UsageReportingEnabled), opt(t.MarketplaceSyndicationEnabled), t.MsAssetTag, t.StackKey} {
		b = strconv.AppendInt(b, int64(len(f)), 10)
		b = append(append(b, ':'), f...)
		b = append(b, ';')
	}
	return b
}

// Sign signs the token with the stack's key and returns its encoding.
func (t Token) Sign(key ed25519.PrivateKey) string {
	t.StackKey = base64.RawURLEncoding.EncodeToString(key.Public().(ed25519.PublicKey))
	t.Signature = base64.RawURLEncoding.EncodeToString(ed25519.Sign(key, t.signedMessage()))
	return t.Encode()
}

// Encode renders the token as the stack hands it out.
func (t Token) Encode() string {
	b, _ := json.Marshal(t)
	return base64.StdEncoding.EncodeToString(b)
}

// UsageReporting is the effective usage-reporting setting.
func (t Token) UsageReporting() bool {
	if t.BillingModel == Capacity {
		return false // forced off for Capacity, as the registration module does
	}
	if t.UsageReportingEnabled != nil {
		return *t.UsageReportingEnabled
	}
	return DefaultUsageReporting(t.BillingModel)
}

// DecodeToken parses and validates a registration token. The field names are
// matched case-insensitively because Azure Stack's own tokens use PascalCase
// (CloudId) in places and camelCase in others.
func DecodeToken(s string) (Token, *arm.Error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Token{}, errInvalidToken("it is empty.")
	}
	var raw []byte
	var err error
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if raw, err = enc.DecodeString(s); err == nil {
			break
		}
	}
	if err != nil {
		return Token{}, errInvalidToken("it is not base64.")
	}
	var t Token
	if err := json.Unmarshal(raw, &t); err != nil {
		return Token{}, errInvalidToken("it does not contain a JSON object (%v).", err)
	}
	var missing []string
	if t.CloudID == "" {
		missing = append(missing, "cloudId")
	}
	if t.ObjectID == "" {
		missing = append(missing, "objectId")
	}
	if t.BillingModel == "" {
		missing = append(missing, "billingModel")
	}
	if len(missing) > 0 {
		return Token{}, errInvalidToken("it lacks %s.", strings.Join(missing, ", "))
	}
	var ok bool
	if t.CloudID, ok = arm.CanonicalGUID(t.CloudID); !ok {
		return Token{}, errInvalidToken("cloudId is not a GUID.")
	}
	if t.ObjectID, ok = arm.CanonicalGUID(t.ObjectID); !ok {
		return Token{}, errInvalidToken("objectId is not a GUID.")
	}
	m, ok := ParseBillingModel(string(t.BillingModel))
	if !ok {
		return Token{}, errInvalidToken("billingModel %q is not one of PayAsYouUse, Capacity, Development, Custom.", t.BillingModel)
	}
	t.BillingModel = m
	if m == Capacity && strings.TrimSpace(t.AgreementNumber) == "" {
		return Token{}, errInvalidToken("the Capacity billing model requires an agreementNumber (the EA agreement number).")
	}
	if len(t.AgreementNumber) > 256 || len(t.MsAssetTag) > 256 || !utf8.ValidString(t.AgreementNumber+t.MsAssetTag) || strings.ContainsRune(t.AgreementNumber+t.MsAssetTag, 0) {
		return Token{}, errInvalidToken("agreementNumber and msAssetTag are limited to 256 characters of valid UTF-8.")
	}
	pub, err1 := base64.RawURLEncoding.DecodeString(t.StackKey)
	sig, err2 := base64.RawURLEncoding.DecodeString(t.Signature)
	switch {
	case t.StackKey == "" || t.Signature == "":
		return Token{}, errInvalidToken("it is not signed by its stack (stackKey and signature are missing).")
	case err1 != nil || err2 != nil || len(pub) != ed25519.PublicKeySize || !ed25519.Verify(ed25519.PublicKey(pub), t.signedMessage(), sig):
		return Token{}, errInvalidToken("its signature does not verify with its stackKey.")
	}
	t.AgreementNumber = strings.TrimSpace(t.AgreementNumber)
	return t, nil
}
