package progress

import (
	"bytes"
	"strings"
	"testing"
)

// capture runs f with Output in a buffer and returns what it printed.
func capture(t *testing.T, f func()) string {
	t.Helper()
	var buf bytes.Buffer
	old := Output
	Output = &buf
	defer func() { Output = old }()
	f()
	return buf.String()
}

// TestPhasesCountFromTheStart: the count is the whole job's from the first
// line; a phase skipped moves the count on; one not planned is added.
func TestPhasesCountFromTheStart(t *testing.T) {
	got := capture(t, func() {
		p := NewPhases("calibrate", "search", "write", "quality check")
		p.Next("calibrate", "128 samples")
		p.Next("write", "")
		p.Next("quality check", "x")
		p.Next("extra", "")
	})
	want := "[1/4] calibrate: 128 samples\n[3/4] write\n[4/4] quality check: x\n[5/5] extra\n"
	if got != want {
		t.Errorf("got\n%swant\n%s", got, want)
	}
	var nilPhases *Phases
	if out := capture(t, func() { nilPhases.Next("x", "") }); out != "" {
		t.Errorf("a nil Phases printed %q", out)
	}
}

// TestBarFinishReaches100: a bar whose last Set was short of the total
// (rounding, a last step not reported) is drawn at 100 % by Finish, once.
func TestBarFinishReaches100(t *testing.T) {
	got := capture(t, func() {
		b := New("write", 11, "MiB")
		b.Set(10, "")
		b.Finish()
		b.Done()
	})
	if !strings.Contains(got, "write 100% 11/11 MiB") || strings.Count(got, "100%") != 1 {
		t.Errorf("bar output %q: want one line at 100 %% and 11/11", got)
	}
}
