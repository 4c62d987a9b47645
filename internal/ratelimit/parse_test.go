package ratelimit

import (
	"strings"
	"testing"
	"time"
)

func TestParseSpec(t *testing.T) {
	tests := []struct {
		in      string
		want    Spec
		wantErr string // substring of the error; "" means success
	}{
		{in: "ip=10/s", want: Spec{TierIP, 10, time.Second, 10}},
		{in: "ip=10/s:20", want: Spec{TierIP, 10, time.Second, 20}},
		{in: "global=100/m:5", want: Spec{TierGlobal, 100, time.Minute, 5}},
		{in: "user=3/h", want: Spec{TierUser, 3, time.Hour, 3}},
		{in: "endpoint=1/s:1", want: Spec{TierEndpoint, 1, time.Second, 1}},
		{in: "session=007/m:010", want: Spec{TierSession, 7, time.Minute, 10}},
		{in: "  ip=5/s  ", want: Spec{TierIP, 5, time.Second, 5}},

		{in: "ip=ten/s", wantErr: `invalid rate limit "ip=ten/s": rate must be N/s, N/m or N/h`},
		{in: "ip", wantErr: `invalid rate limit "ip": want TIER=RATE[:BURST], e.g. ip=10/s:20`},
		{in: "", wantErr: `invalid rate limit "": want TIER=RATE[:BURST]`},
		{in: "foo=1/s", wantErr: `invalid rate limit "foo=1/s": tier must be global, ip, user, endpoint or session`},
		{in: "IP=1/s", wantErr: "tier must be"},
		{in: "=1/s", wantErr: "tier must be"},
		{in: "ip=1/s:0", wantErr: `invalid rate limit "ip=1/s:0": burst must be a positive integer`},
		{in: "ip=1/s:", wantErr: "burst must be a positive integer"},
		{in: "ip=1/s:x", wantErr: "burst must be a positive integer"},
		{in: "ip=1/s:-2", wantErr: "burst must be a positive integer"},
		{in: "ip=1/s:2:3", wantErr: "burst must be a positive integer"},
		{in: "ip=0/s", wantErr: "rate must be N/s, N/m or N/h"},
		{in: "ip=-1/s", wantErr: "rate must be"},
		{in: "ip=+1/s", wantErr: "rate must be"},
		{in: "ip= 1/s", wantErr: "rate must be"},
		{in: "ip=1/d", wantErr: "rate must be"},
		{in: "ip=1/sec", wantErr: "rate must be"},
		{in: "ip=1", wantErr: "rate must be"},
		{in: "ip=/s", wantErr: "rate must be"},
		{in: "ip=1.5/s", wantErr: "rate must be"},
		{in: "ip=99999999999/s", wantErr: "rate must be"},
		{in: "ip=1/s:99999999999", wantErr: "burst must be"},
		{in: "ip=1/s\nx", wantErr: `invalid rate limit "ip=1/s\nx": rate must be`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseSpec(tt.in)
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("ParseSpec(%q) = %+v, want error %q", tt.in, got, tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %q, want %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "\n") {
					t.Fatalf("error %q is not one line", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseSpec(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Fatalf("ParseSpec(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
		})
	}
}

func TestSpecString(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"ip=10/s:20", "ip=10/s:20"},
		{"ip=10/s", "ip=10/s:10"},
		{"global=1/m", "global=1/m:1"},
		{"session=2/h:9", "session=2/h:9"},
	}
	for _, tt := range tests {
		sp, err := ParseSpec(tt.in)
		if err != nil {
			t.Fatal(err)
		}
		if got := sp.String(); got != tt.want {
			t.Errorf("String() = %q, want %q", got, tt.want)
		}
	}
	if got, want := (Spec{Tier: TierUser, Events: 4, Per: time.Minute}).String(), "user=4/m:4"; got != want {
		t.Errorf("String() without burst = %q, want %q", got, want)
	}
}

func TestParseSpecs(t *testing.T) {
	got, err := ParseSpecs([]string{"ip=10/s:20", "global=1000/m", "user=5/h"})
	if err != nil {
		t.Fatal(err)
	}
	want := []Spec{
		{TierIP, 10, time.Second, 20},
		{TierGlobal, 1000, time.Minute, 1000},
		{TierUser, 5, time.Hour, 5},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d specs, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("spec %d = %+v, want %+v", i, got[i], want[i])
		}
	}

	if got, err := ParseSpecs(nil); err != nil || len(got) != 0 {
		t.Errorf("ParseSpecs(nil) = %v, %v; want empty, nil", got, err)
	}

	errTests := []struct {
		in   []string
		want string
	}{
		{[]string{"ip=1/s", "ip=2/s"}, `invalid rate limit "ip=2/s": tier ip given twice`},
		{[]string{"ip=1/s", "user=1/m", "ip=1/s"}, `invalid rate limit "ip=1/s": tier ip given twice`},
		{[]string{"ip=1/s", "user=x"}, `invalid rate limit "user=x": rate must be N/s, N/m or N/h`},
	}
	for _, tt := range errTests {
		_, err := ParseSpecs(tt.in)
		if err == nil || err.Error() != tt.want {
			t.Errorf("ParseSpecs(%q) error = %v, want %q", tt.in, err, tt.want)
		}
	}
}

func FuzzParseSpec(f *testing.F) {
	for _, s := range []string{
		"ip=10/s", "ip=10/s:20", "global=1/h", "session=5/m:1", "user=ten/s",
		"endpoint=1/s:", "ip", "=", ":", "ip=1/s:2:3", " ip=1/m ", "ip=2147483647/h:2147483647",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sp, err := ParseSpec(s)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error %q is not one line", err)
			}
			return
		}
		if !sp.valid() || sp.Burst <= 0 {
			t.Fatalf("ParseSpec(%q) = %+v: not a usable spec", s, sp)
		}
		again, err := ParseSpec(sp.String())
		if err != nil {
			t.Fatalf("ParseSpec(%q).String() = %q does not re-parse: %v", s, sp.String(), err)
		}
		if again != sp {
			t.Fatalf("re-parse of %q = %+v, want %+v", sp.String(), again, sp)
		}
	})
}
