package bench

import (
	"os"
	"path/filepath"
	"testing"
)

// The rows compare ours with theirs as ratios with the goal at most 1.2:
// 661 / 458 MiB fails it, 500 / 458 meets it.
func TestQuantRSSRows(t *testing.T) {
	const mib = 1 << 20
	theirs := rssPeak{hwm: 458 * mib, anon: 323 * mib, file: 136 * mib}
	for _, c := range []struct {
		ours      rssPeak
		hwm, anon bool
	}{
		{rssPeak{hwm: 661 * mib, anon: 512 * mib, file: 151 * mib}, false, false},
		{rssPeak{hwm: 500 * mib, anon: 380 * mib, file: 120 * mib}, true, true},
	} {
		var rep Report
		for _, r := range quantRSSRows("Q8_0", c.ours, theirs, true, "llama-quantize") {
			rep.add(r)
		}
		if len(rep.Results) != 2 || rep.Results[0].Name != "quant.rss.Q8_0" || rep.Results[1].Name != "quant.rss_anon.Q8_0" {
			t.Fatalf("rows %+v", rep.Results)
		}
		h, a := rep.Results[0], rep.Results[1]
		if want := float64(c.ours.hwm) / float64(theirs.hwm); h.Ratio < want-1e-9 || h.Ratio > want+1e-9 {
			t.Errorf("VmHWM ratio %v, want %v", h.Ratio, want)
		}
		if want := float64(c.ours.anon) / float64(theirs.anon); a.Ratio < want-1e-9 || a.Ratio > want+1e-9 {
			t.Errorf("RssAnon ratio %v, want %v", a.Ratio, want)
		}
		if h.GoalMet == nil || *h.GoalMet != c.hwm || a.GoalMet == nil || *a.GoalMet != c.anon {
			t.Errorf("ours %+v: goals met %v %v, want %v %v", c.ours, h.GoalMet, a.GoalMet, c.hwm, c.anon)
		}
	}
}

func TestSameBytes(t *testing.T) {
	dir := t.TempDir()
	big := make([]byte, 3<<20+5)
	for i := range big {
		big[i] = byte(i * 31)
	}
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	a := write("a", big)
	same := write("same", big)
	changed := append([]byte(nil), big...)
	changed[2<<20+7]++
	diff := write("diff", changed)
	short := write("short", big[:len(big)-1])
	empty1, empty2 := write("e1", nil), write("e2", nil)
	for _, c := range []struct {
		x, y string
		want bool
	}{{a, same, true}, {a, diff, false}, {a, short, false}, {short, a, false}, {empty1, empty2, true}, {empty1, a, false}} {
		got, err := sameBytes(c.x, c.y)
		if err != nil || got != c.want {
			t.Errorf("sameBytes(%s, %s) = %v, %v; want %v", filepath.Base(c.x), filepath.Base(c.y), got, err, c.want)
		}
	}
	if _, err := sameBytes(a, filepath.Join(dir, "missing")); err == nil {
		t.Error("sameBytes of a missing file succeeded")
	}
}
