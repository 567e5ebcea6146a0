package main

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// TestNoTestingInBinary checks that the binary does not link the testing
// package (it did through a test helper; issue 24).
func TestNoTestingInBinary(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 10 || !slices.Contains(deps, "github.com/urfave/cli/v2") {
		t.Fatalf("go list -deps gave %d packages, not the binary's: %q", len(deps), out)
	}
	for _, d := range deps {
		if d == "testing" || strings.HasPrefix(d, "testing/") {
			t.Errorf("the binary imports %s", d)
		}
	}
}
