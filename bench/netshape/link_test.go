package netshape

import (
	"reflect"
	"testing"
	"time"
)

func TestParseLink(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    Link
		str     string
		wantErr bool
	}{
		{in: "", want: Link{}, str: "clean"},
		{in: "clean", want: Link{}, str: "clean"},
		{in: "1mbit,rtt=40ms", want: Link{Rate: []Step{{0, 1_000_000}}, RTT: 40 * time.Millisecond}, str: "1mbit,rtt=40ms"},
		{in: "350kbit,rtt=40ms", want: Link{Rate: []Step{{0, 350_000}}, RTT: 40 * time.Millisecond}, str: "350kbit,rtt=40ms"},
		{in: "loss=5%,rtt=100ms", want: Link{Loss: 0.05, RTT: 100 * time.Millisecond}, str: "loss=5%,rtt=100ms"},
		{in: "2.5mbit", want: Link{Rate: []Step{{0, 2_500_000}}}, str: "2.5mbit"},
		{in: "800000", want: Link{Rate: []Step{{0, 800_000}}}, str: "800kbit"},
		{
			in:   "3mbit->700kbit@20s->3mbit@40s",
			want: Link{Rate: []Step{{0, 3_000_000}, {20 * time.Second, 700_000}, {40 * time.Second, 3_000_000}}},
			str:  "3mbit->700kbit@20s->3mbit@40s",
		},
		{in: "1mbit,2mbit", wantErr: true},
		{in: "1mbit@5s", wantErr: true},
		{in: "1mbit->2mbit", wantErr: true},
		{in: "1mbit->2mbit@5s->1mbit@5s", wantErr: true},
		{in: "fast", wantErr: true},
		{in: "1kbit", wantErr: true},
		{in: "loss=100%", wantErr: true},
		{in: "loss=-1%", wantErr: true},
		{in: "rtt=soon", wantErr: true},
		{in: "jitter=5ms", wantErr: true},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseLink(tc.in)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("ParseLink(%q) = %+v, want an error", tc.in, got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("ParseLink(%q) = %+v, want %+v", tc.in, got, tc.want)
			}
			if s := got.String(); s != tc.str {
				t.Errorf("String() = %q, want %q", s, tc.str)
			}
			if again, err := ParseLink(got.String()); err != nil || !reflect.DeepEqual(again, got) {
				t.Errorf("String() does not parse back: %+v, %v", again, err)
			}
		})
	}
}
