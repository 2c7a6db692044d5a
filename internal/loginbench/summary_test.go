package loginbench

import (
	"strings"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	for _, tt := range []struct {
		d    []time.Duration
		p    float64
		want time.Duration
	}{
		{nil, 0.5, 0},
		{ms(7), 0.99, 7 * time.Millisecond},
		{ms(4, 1, 3, 2), 0.5, 2 * time.Millisecond},
		{ms(4, 1, 3, 2), 1, 4 * time.Millisecond},
		{ms(4, 1, 3, 2), 0, time.Millisecond},
		// 100 values: p99 is the 99th, not the largest.
		{func() []time.Duration {
			d := make([]time.Duration, 100)
			for i := range d {
				d[i] = time.Duration(100-i) * time.Millisecond
			}
			return d
		}(), 0.99, 99 * time.Millisecond},
	} {
		if got := Percentile(tt.d, tt.p); got != tt.want {
			t.Errorf("Percentile(%v, %v) = %v, want %v", tt.d, tt.p, got, tt.want)
		}
	}
}

func TestSummary(t *testing.T) {
	for _, tt := range []struct {
		name    string
		r       Result
		rate    float64
		cpu     time.Duration
		revs    float64
		rows    []string
		notRows []string
	}{
		{
			name: "cluster run",
			r: Result{Config: Config{Workers: 32, Rooms: 100, Duration: 10 * time.Second, PIDs: []int{11, 12}},
				Elapsed: 10 * time.Second, Cycles: 1000, Logins: 1002, Logouts: 1000, Revisions: 4000,
				CPU:        []time.Duration{6 * time.Second, 4 * time.Second},
				LoginTimes: []time.Duration{time.Millisecond, 2 * time.Millisecond}, LogoutTimes: []time.Duration{time.Millisecond},
				Errors: map[ErrorKey]int64{{"login", 1000037}: 2, {"logout", 0}: 1}, FirstError: "login: etcd did not answer"},
			rate: 100, cpu: 10 * time.Millisecond, revs: 4,
			rows: []string{"cycles                         1000 in 10.0 s (100.0/s)", "logins / logouts               1002 / 1000",
				"login p50 / p99 / max          1.00 ms / 2.00 ms / 2.00 ms", "errors                         3",
				"login 1000037                2", "logout no code               1", "etcd revisions                 4000 (4.00 per cycle)",
				"server CPU                     10.00 s over 2 processes", "11: 6.00 s, 12: 4.00 s", "server CPU per cycle           10.00 ms"},
			notRows: []string{"callbacks"},
		},
		{
			name: "staying, nothing measured on the servers",
			r:    Result{Config: Config{Workers: 4, Rooms: 1, Duration: time.Second, Stay: true}, Elapsed: 2 * time.Second, Cycles: 10, Logins: 10, Revisions: -1},
			rate: 5, cpu: 0, revs: -1,
			rows:    []string{"login, staying", "errors                         0"},
			notRows: []string{"logout p50", "etcd revisions", "server CPU"},
		},
		{
			name: "callbacks",
			r: Result{Config: Config{Workers: 1, Rooms: 1, Duration: time.Second, Callbacks: &CallbackConfig{}}, Elapsed: time.Second, Cycles: 0, Revisions: 0,
				Callbacks: &CallbackResult{Received: 5, Unique: 4, ByEvent: map[string]int64{"room_login": 2, "room_logout": 2},
					Delays: []time.Duration{time.Millisecond, 3 * time.Millisecond}, OutboxMax: 9, OutboxEnd: 0}},
			revs: -1,
			rows: []string{"callbacks received             5 (4 distinct, 1 repeated, 0 bad signatures)", "room_login                   2",
				"callback delay p50 / p99       1.00 ms / 3.00 ms", "outbox depth max / after       9 / 0", "etcd revisions                 0 (- per cycle)"},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.r.Rate(); got != tt.rate {
				t.Errorf("Rate = %v, want %v", got, tt.rate)
			}
			if got := tt.r.CPUPerCycle(); got != tt.cpu {
				t.Errorf("CPUPerCycle = %v, want %v", got, tt.cpu)
			}
			if got := tt.r.RevisionsPerCycle(); got != tt.revs {
				t.Errorf("RevisionsPerCycle = %v, want %v", got, tt.revs)
			}
			var b strings.Builder
			tt.r.Print(&b)
			for _, row := range tt.rows {
				if !strings.Contains(b.String(), row) {
					t.Errorf("no %q in\n%s", row, b.String())
				}
			}
			for _, row := range tt.notRows {
				if strings.Contains(b.String(), row) {
					t.Errorf("%q in\n%s", row, b.String())
				}
			}
		})
	}
}

func TestCallbackConfigCheck(t *testing.T) {
	for _, tt := range []struct {
		c       CallbackConfig
		wantErr string
	}{
		{CallbackConfig{Listen: "127.0.0.1:0", AuthServer: "127.0.0.1:9090", AdminKey: "k"}, ""},
		{CallbackConfig{Listen: "[::1]:7000", AuthServer: "127.0.0.1:9090", AdminKey: "k"}, ""},
		{CallbackConfig{Listen: "0.0.0.0:0", AuthServer: "a", AdminKey: "k"}, "must be a loopback IP address"},
		{CallbackConfig{Listen: "localhost:0", AuthServer: "a", AdminKey: "k"}, "must be a loopback IP address"},
		{CallbackConfig{Listen: "127.0.0.1", AuthServer: "a", AdminKey: "k"}, "missing port"},
		{CallbackConfig{Listen: "127.0.0.1:0", AuthServer: "a"}, "admin key"},
	} {
		err := tt.c.check()
		if (tt.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("%+v: check = %v, want %q", tt.c, err, tt.wantErr)
		}
	}
}
