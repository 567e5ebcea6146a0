package usage

import (
	"errors"
	"testing"
)

func TestChoice(t *testing.T) {
	type kind string
	values := []kind{"mean", "last"}
	if k, err := Choice("rep", "last", values); err != nil || k != "last" {
		t.Errorf("Choice(last) = %q, %v", k, err)
	}
	_, err := Choice("rep", "first", values)
	var ue *Error
	if !errors.As(err, &ue) || err.Error() != `--rep "first" is not one of mean, last` {
		t.Errorf("Choice(first): %v", err)
	}
}

func TestAtLeast(t *testing.T) {
	if err := AtLeast("ctx", 8, 8, "tokens"); err != nil {
		t.Errorf("AtLeast(8, 8): %v", err)
	}
	if err := AtLeast("ctx", 0, 8, "tokens"); err == nil || err.Error() != "--ctx 0 is out of range: want an integer ≥ 8 (tokens)" {
		t.Errorf("AtLeast(0, 8): %v", err)
	}
}
