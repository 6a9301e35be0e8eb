package egress_test

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/connec/connec/connectors/egress"
)

// Cloud metadata and credential endpoints are refused whatever the
// instance allows (allow_private_network or not), reached by name (checked
// after resolution) or as a literal, plain or embedded in an IPv6 address,
// and the refusal says why.
func TestMetadataEndpointsAlwaysRefused(t *testing.T) {
	addrs := []string{
		"169.254.169.254", "169.254.169.123", "169.254.169.253", "169.254.169.0", "169.254.169.255", // AWS, GCP, Azure, OpenStack; Amazon Time Sync, DNS
		"169.254.170.2", "169.254.170.23", // ECS task credentials, EKS pod identity
		"169.254.0.23",                                     // Tencent Cloud
		"100.100.100.200",                                  // Alibaba Cloud
		"168.63.129.16",                                    // Azure WireServer
		"192.0.0.192",                                      // Oracle Cloud
		"fd00:ec2::254", "fd00:ec2::23", "fd00:ec2:0:1::1", // AWS IPv6
		"::ffff:169.254.169.254", "64:ff9b::a9fe:aa02", "2002:a83f:8110::1", // embedded 169.254.170.2, 168.63.129.16
	}
	table := map[string][]string{}
	for i, a := range addrs {
		table[strings.Repeat("m", i+1)+".example.com"] = []string{a}
	}
	// Canceled: should a check ever let one through, nothing is dialled.
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	for _, private := range []bool{false, true} {
		g := guard(t, []string{"*.example.com"}, egress.Options{AllowPrivate: private, Resolver: &hosts{table: table}})
		for name, a := range table {
			_, err := g.DialContext(canceled, "tcp", name+":80")
			var re *egress.RefusedError
			if !errors.As(err, &re) || !strings.Contains(re.Reason, "metadata") {
				t.Errorf("allow_private_network=%v: %s (%s) not refused as a metadata endpoint: %v", private, name, a[0], err)
			}
		}
	}
	for _, a := range addrs {
		if !egress.IsMetadata(netip.MustParseAddr(a)) {
			t.Errorf("IsMetadata(%s) = false", a)
		}
	}
	for _, a := range []string{"169.254.1.1", "100.100.100.199", "168.63.129.17", "192.0.0.193", "fd00:ec3::1", "8.8.8.8"} {
		if egress.IsMetadata(netip.MustParseAddr(a)) {
			t.Errorf("IsMetadata(%s) = true", a)
		}
	}
}
