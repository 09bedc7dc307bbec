// Package simulate plays Azure Stack's resource providers: it builds a
// deterministic world of tenants and their resources and produces the usage
// events those resources would emit, hour by hour, with the exact totals of
// what it produced so tests and benchmarks can check stored usage against
// them to the last digit.
//
// Everything derives from a seed: the same seed, tenant count and hour give
// the same events with the same IDs, so re-sending a range is a true replay
// (every event a duplicate).
package simulate

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"sort"
	"time"

	"github.com/stackbill/stackbill/internal/money"
	"github.com/stackbill/stackbill/internal/usage"
)

// Meter IDs the simulator emits, as Azure Stack documents them.
const (
	MeterBaseVM         = "FAB6EB84-500B-4A09-A8CA-7358F8BBAEA5"
	MeterWindowsVM      = "9CD92D4C-BAFD-4492-B278-BEDC2DE8232A"
	MeterVMHours        = "6DAB500F-A4FD-49C4-956D-229BB9C8C793"
	MeterBlockBlob      = "09F8879E-87E9-4305-A572-4B7BE209F857"
	MeterTableCapacity  = "B4438D5D-453B-4EE1-B42A-DC72E377F1E4"
	MeterQueueCapacity  = "B03C6AE7-B080-4BFA-84A3-22C800F315C6"
	MeterBlobTx         = "43DAF82B-4618-444A-B994-40C23F7CD438"
	MeterBlobIn         = "9764F92C-E44A-498E-8DC1-AAD66587A810"
	MeterBlobOut        = "3023FEF4-ECA5-4D7B-87B3-CFBC061931E8"
	MeterStaticIP       = "F271A8A388C44D93956A063E1D2FA80B"
	MeterAppService     = "190C935E-9ADA-48FF-9AB8-56EA1CF9ADAA"
	MeterSharedAppHours = "957E9F36-2C14-45A1-B6A1-1723EF71A01D"
	MeterSQLDatabase    = "CBCFEF9A-B91F-4597-A4D3-01FE334BED82"
	MeterMySQLDatabase  = "E6D8CFCD-7734-495E-B1CC-5AB0B9C24BD3"
)

// Config shapes a world.
type Config struct {
	Tenants int
	Seed    uint64
	// VMsPerTenant is the largest number of VMs a tenant gets (at least 1).
	VMsPerTenant int
}

// Tenant is one simulated end customer: a directory tenant with one user
// subscription and its resources.
type Tenant struct {
	Name           string
	DirectoryID    string
	SubscriptionID string
	Resources      []Resource
}

// Resource is something that emits usage.
type Resource struct {
	Kind     string // vm, storage, ip, appservice, sql, mysql
	Name     string
	URI      string
	VCPUs    int64
	Windows  bool
	Size     string // VM series, e.g. Standard_D2_v2
	SizeMB   int64  // databases
	Count    int64  // static IPs, App Service instances
	baseGB   int64
	location string
}

// World is the simulated stack population.
type World struct {
	Config  Config
	Tenants []Tenant
}

func guid(seed uint64, parts ...any) string {
	h := fnv.New128a()
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], seed)
	h.Write(b[:])
	fmt.Fprint(h, parts...)
	s := h.Sum(nil)
	s[6] = (s[6] & 0x0f) | 0x40
	s[8] = (s[8] & 0x3f) | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", s[0:4], s[4:6], s[6:8], s[8:10], s[10:16])
}

var vmSizes = []struct {
	name  string
	vcpus int64
}{{"Standard_A1", 1}, {"Standard_D1_v2", 1}, {"Standard_D2_v2", 2}, {"Standard_F4s", 4}, {"Standard_DS13_v2", 8}, {"Standard_D4_v2", 8}}

// New builds a world from its config.
func New(cfg Config) World {
	if cfg.VMsPerTenant < 1 {
		cfg.VMsPerTenant = 4
	}
	w := World{Config: cfg}
	for i := 0; i < cfg.Tenants; i++ {
		r := rand.New(rand.NewPCG(cfg.Seed, uint64(i)))
		t := Tenant{Name: fmt.Sprintf("tenant%03d", i), DirectoryID: guid(cfg.Seed, "dir", i), SubscriptionID: guid(cfg.Seed, "sub", i)}
		rg := "/subscriptions/" + t.SubscriptionID + "/resourceGroups/rg-" + t.Name
		for v := 0; v < 1+r.IntN(cfg.VMsPerTenant); v++ {
			sz := vmSizes[r.IntN(len(vmSizes))]
			t.Resources = append(t.Resources, Resource{Kind: "vm", Name: fmt.Sprintf("vm%d", v), URI: fmt.Sprintf("%s/providers/Microsoft.Compute/virtualMachines/vm%d", rg, v),
				VCPUs: sz.vcpus, Size: sz.name, Windows: r.IntN(2) == 0, location: "local"})
		}
		t.Resources = append(t.Resources, Resource{Kind: "storage", Name: "st" + t.Name, URI: rg + "/providers/Microsoft.Storage/storageAccounts/st" + t.Name, baseGB: 10 + int64(r.IntN(500)), location: "local"})
		t.Resources = append(t.Resources, Resource{Kind: "ip", Name: "pip", URI: rg + "/providers/Microsoft.Network/publicIPAddresses/pip", Count: 1 + int64(r.IntN(3)), location: "local"})
		if r.IntN(3) == 0 {
			t.Resources = append(t.Resources, Resource{Kind: "appservice", Name: "web", URI: rg + "/providers/Microsoft.Web/serverFarms/plan", VCPUs: 1 + int64(r.IntN(2)), Count: 1 + int64(r.IntN(2)), location: "local"})
		}
		if r.IntN(3) == 0 {
			t.Resources = append(t.Resources, Resource{Kind: "sql", Name: "db", URI: rg + "/providers/Microsoft.SQLAdapter/databases/db", SizeMB: 1024 * (1 + int64(r.IntN(8))), location: "local"})
		}
		if r.IntN(4) == 0 {
			t.Resources = append(t.Resources, Resource{Kind: "mysql", Name: "mydb", URI: rg + "/providers/Microsoft.MySQLAdapter/databases/mydb", SizeMB: 512 * (1 + int64(r.IntN(8))), location: "local"})
		}
		w.Tenants = append(w.Tenants, t)
	}
	return w
}

// vmState is a VM's state during an hour: running and stopped VMs are
// charged (Azure Stack charges until deallocation), deallocated ones are not.
func (w World) vmState(t, res int, hour time.Time) string {
	r := rand.New(rand.NewPCG(w.Config.Seed^uint64(hour.Unix()/3600), uint64(t*1000+res)))
	switch x := r.IntN(100); {
	case x < 70:
		return "running"
	case x < 80:
		return "stopped"
	default:
		return "deallocated"
	}
}

// decimal renders n / 10^places exactly.
func decimal(n int64, places int) money.Quantity {
	return money.MustQuantity(fmt.Sprintf("%de-%d", n, places))
}

// Events returns the usage events of one hour, in a stable order.
func (w World) Events(hour time.Time) []usage.Event {
	hour = hour.UTC().Truncate(time.Hour)
	end := hour.Add(time.Hour)
	var out []usage.Event
	for ti, t := range w.Tenants {
		for ri, res := range t.Resources {
			r := rand.New(rand.NewPCG(w.Config.Seed^uint64(hour.Unix()), uint64(ti*1000+ri)))
			emit := func(meterID string, q money.Quantity, info string) {
				h := hour
				e := usage.Event{
					ID: guid(w.Config.Seed, t.SubscriptionID, meterID, res.URI, hour.Unix()), Source: "stackbill-simulator",
					SubscriptionID: t.SubscriptionID, MeterID: meterID, Quantity: &q, StartTime: &h, ResourceURI: res.URI, Location: res.location,
				}
				e.EndTime = &end
				if info != "" {
					e.AdditionalInfo = []byte(info)
				}
				out = append(out, e)
			}
			switch res.Kind {
			case "vm":
				if w.vmState(ti, ri, hour) == "deallocated" {
					continue
				}
				info := fmt.Sprintf(`{"ServiceType":%q}`, res.Size)
				emit(MeterBaseVM, money.FromInt(res.VCPUs), info)
				if res.Windows {
					emit(MeterWindowsVM, money.FromInt(res.VCPUs), info)
				}
				emit(MeterVMHours, money.FromInt(1), info)
			case "storage":
				days := hour.Sub(time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)).Hours() / 24
				gbMilli := res.baseGB*1000 + int64(days)%365*37 + int64(r.IntN(1000))
				emit(MeterBlockBlob, decimal(gbMilli, 3), "")
				emit(MeterTableCapacity, decimal(int64(r.IntN(50000)), 6), "")
				emit(MeterQueueCapacity, decimal(int64(r.IntN(9000)), 6), "")
				emit(MeterBlobTx, decimal(int64(r.IntN(250000)), 6), "")
				emit(MeterBlobIn, decimal(int64(r.IntN(3000000)), 7), "")
				emit(MeterBlobOut, decimal(int64(r.IntN(9000000)), 7), "")
			case "ip":
				emit(MeterStaticIP, money.FromInt(res.Count), "")
			case "appservice":
				emit(MeterAppService, money.FromInt(res.VCPUs*res.Count), "")
				emit(MeterSharedAppHours, money.FromInt(1), "")
			case "sql":
				emit(MeterSQLDatabase, money.FromInt(res.SizeMB), "")
			case "mysql":
				emit(MeterMySQLDatabase, money.FromInt(res.SizeMB), "")
			}
		}
	}
	return out
}

// Totals accumulates produced quantities per subscription and meter.
type Totals map[string]map[string]money.Quantity

// Add counts events into the totals.
func (t Totals) Add(events []usage.Event) {
	for _, e := range events {
		m := t[e.SubscriptionID]
		if m == nil {
			m = map[string]money.Quantity{}
			t[e.SubscriptionID] = m
		}
		m[e.MeterID] = m[e.MeterID].Add(*e.Quantity)
	}
}

// Hours lists the hour starts in [from, to).
func Hours(from, to time.Time) []time.Time {
	var out []time.Time
	for h := from.UTC().Truncate(time.Hour); h.Before(to); h = h.Add(time.Hour) {
		out = append(out, h)
	}
	return out
}

// SortedSubscriptions lists the world's subscription IDs in order.
func (w World) SortedSubscriptions() []string {
	var out []string
	for _, t := range w.Tenants {
		out = append(out, t.SubscriptionID)
	}
	sort.Strings(out)
	return out
}
