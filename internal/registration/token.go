package registration

import (
	"encoding/base64"
	"encoding/json"
	"strings"

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
	t.AgreementNumber = strings.TrimSpace(t.AgreementNumber)
	if m == Capacity && t.AgreementNumber == "" {
		return Token{}, errInvalidToken("the Capacity billing model requires an agreementNumber (the EA agreement number).")
	}
	return t, nil
}
