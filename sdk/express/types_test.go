package express

import (
	"testing"

	mediav1 "github.com/onair-dev/onair/proto/onair/media/v1"
)

// The SDK's enums are what the vendor's SDKs show, whatever the wire uses.
func TestVendorNumbers(t *testing.T) {
	tests := []struct {
		name      string
		got, want int
	}{
		{"UpdateTypeAdd", int(UpdateTypeAdd), 0},
		{"UpdateTypeDelete", int(UpdateTypeDelete), 1},
		{"ResourceModeDefault", int(ResourceModeDefault), 0},
		{"ResourceModeOnlyCDN", int(ResourceModeOnlyCDN), 1},
		{"ResourceModeOnlyL3", int(ResourceModeOnlyL3), 2},
		{"ResourceModeOnlyRTC", int(ResourceModeOnlyRTC), 3},
		{"ResourceModeCDNPlus", int(ResourceModeCDNPlus), 4},
		{"ResourceModeCustom", int(ResourceModeCustom), 5},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s = %d, want the vendor's %d", tt.name, tt.got, tt.want)
		}
	}
}

// A player's resource mode goes on the wire as the same number
// (StartPlayingStream converts it), so it must name the same mode there.
func TestResourceModeOnTheWire(t *testing.T) {
	tests := []struct {
		mode ResourceMode
		want mediav1.ResourceMode
	}{
		{ResourceModeDefault, mediav1.ResourceMode_RESOURCE_MODE_UNSPECIFIED},
		{ResourceModeOnlyCDN, mediav1.ResourceMode_RESOURCE_MODE_ONLY_CDN},
		{ResourceModeOnlyL3, mediav1.ResourceMode_RESOURCE_MODE_ONLY_L3},
		{ResourceModeOnlyRTC, mediav1.ResourceMode_RESOURCE_MODE_ONLY_RTC},
		{ResourceModeCDNPlus, mediav1.ResourceMode_RESOURCE_MODE_CDN_PLUS},
		{ResourceModeCustom, mediav1.ResourceMode_RESOURCE_MODE_CUSTOM},
	}
	for _, tt := range tests {
		if got := mediav1.ResourceMode(tt.mode); got != tt.want {
			t.Errorf("ResourceMode %d on the wire = %v, want %v", tt.mode, got, tt.want)
		}
	}
}
