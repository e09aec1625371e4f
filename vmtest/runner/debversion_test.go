package main

import "testing"

func TestCompareDebianVersions(t *testing.T) {
	// Each pair is ordered a < b, as `dpkg --compare-versions a lt b` says.
	less := [][2]string{
		{"6.1.176-1", "6.1.192-2"},
		{"6.1.192-1", "6.1.192-2"},
		{"6.1.99-1", "6.1.176-1"},
		{"6.12.107-1~deb12u1", "6.12.117-1~deb12u1"},
		{"6.12.115-2~deb12u1", "6.12.115-2"},
		{"6.12.115-1", "6.12.115-1+b1"},
		{"1.0~rc1-1", "1.0-1"},
		{"9.9-1", "1:0.1-1"},
		{"1.0a-1", "1.0b-1"},
		{"1.0-1", "1.0.1-1"},
	}
	for _, p := range less {
		if got := compareDebianVersions(p[0], p[1]); got != -1 {
			t.Errorf("compare(%q, %q) = %d, want -1", p[0], p[1], got)
		}
		if got := compareDebianVersions(p[1], p[0]); got != 1 {
			t.Errorf("compare(%q, %q) = %d, want 1", p[1], p[0], got)
		}
	}
	if got := compareDebianVersions("6.1.192-2", "6.1.192-2"); got != 0 {
		t.Errorf("equal versions compare as %d", got)
	}
}
