package job

import "testing"

func TestMarkersRoundTrip(t *testing.T) {
	// SeaBIOS and the kernel can put escape sequences and \r around console output.
	line := "\x1b[2J\x1b[01;01H" + ExitLine(3) + "\r"
	if got, ok := ParseExit(line); !ok || got != 3 {
		t.Fatalf("ParseExit(%q) = %d, %v; want 3, true", line, got, ok)
	}
	if got, ok := ParseBooted("[    4.1] " + BootedLine(4.5)); !ok || got != 4.5 {
		t.Fatalf("ParseBooted = %v, %v; want 4.5, true", got, ok)
	}
	if _, ok := ParseExit("VMTEST-EXIT status="); ok {
		t.Fatal("ParseExit accepted a marker without a number")
	}
}

func TestDebugExitValue(t *testing.T) {
	for status, want := range map[int]uint32{0: 0, 1: 1, 127: 127, 128: 127, 255: 127, -1: 127} {
		if got := DebugExitValue(status); got != want {
			t.Errorf("DebugExitValue(%d) = %d, want %d", status, got, want)
		}
	}
}
