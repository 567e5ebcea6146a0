package bench

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeLlamaPerplexity writes a script that prints out as llama-perplexity
// would (its arguments ignored) and returns its path.
func fakeLlamaPerplexity(t *testing.T, out string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "llama-perplexity")
	if err := os.WriteFile(p, []byte("#!/bin/sh\ncat <<'EOF'\n"+out+"\nEOF\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestRunLlamaPerplexity checks the reading of llama-perplexity's output:
// the loop from its log's "calculating perplexity" timestamp to the "Final
// estimate" one (also when its stdout shares a line with the log), the
// final PPL, and, when the log's last lines are lost, the running
// estimate; output without the timed start is an error.
func TestRunLlamaPerplexity(t *testing.T) {
	const start = "0.01.500.000 I perplexity: calculating perplexity over 16 chunks, n_ctx=256, batch_size=2048, n_seq=8\n"
	running := "[1]7.1220,[2]7.2592,[15]6.6398,[16]6.5049,"
	for _, tc := range []struct {
		name, out string
		tps, ppl  float64
	}{
		{"final line", start + running + "\n1.03.500.000 I Final estimate: PPL = 6.5049 +/- 0.29430", 16 * 256 / 62.0, 6.5049},
		{"shared line", start + running + "0.03.500.000 I Final estimate: PPL = 6.5050 +/- 0.29430", 16 * 256 / 2.0, 6.5050},
	} {
		tps, ppl, err := runLlamaPerplexity(context.Background(), fakeLlamaPerplexity(t, tc.out), "m.gguf", "t.txt", 256, 2)
		if err != nil || math.Abs(tps-tc.tps) > 1e-9 || ppl != tc.ppl {
			t.Errorf("%s: %.6g tok/s, PPL %g, %v; want %.6g, %g", tc.name, tps, ppl, err, tc.tps, tc.ppl)
		}
	}
	// No final line: the running estimate, timed to the process's end.
	early := "0.00.000.001 I perplexity: calculating perplexity over 16 chunks\n"
	tps, ppl, err := runLlamaPerplexity(context.Background(), fakeLlamaPerplexity(t, early+running), "m.gguf", "t.txt", 256, 2)
	if err != nil || ppl != 6.5049 || tps <= 0 {
		t.Errorf("lost final line: %g tok/s, PPL %g, %v", tps, ppl, err)
	}
	if _, _, err := runLlamaPerplexity(context.Background(), fakeLlamaPerplexity(t, running), "m.gguf", "t.txt", 256, 2); err == nil || !strings.Contains(err.Error(), "no timed perplexity run") {
		t.Errorf("no start line: %v, want an error", err)
	}
}
