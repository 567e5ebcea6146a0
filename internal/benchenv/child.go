package benchenv

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
)

// TB is what RunChild needs of a test or benchmark (testing.TB has it).
// The package does not import testing: the mka-gguf binary's bench
// command uses CopyFile, and a binary that imports testing links it.
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
}

// childMarker starts the line a child process reports its result on.
const childMarker = "BENCHENV_CHILD"

// PrintChildResult prints the result of a benchmark case run by RunChild:
// integer fields such as a duration in ns and the peak RSS in kB.
func PrintChildResult(fields map[string]int64) {
	var b strings.Builder
	b.WriteString(childMarker)
	for k, v := range fields {
		fmt.Fprintf(&b, " %s=%d", k, v)
	}
	fmt.Println(b.String())
}

// RunChild runs the test function test of the current test binary in a
// child process with env ("KEY=value") added, so that a benchmark case has
// a peak RSS of its own, and returns the fields the child printed with
// PrintChildResult. It fails tb when the child fails or prints none.
func RunChild(tb TB, test string, env ...string) map[string]int64 {
	tb.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+test+"$", "-test.count=1")
	cmd.Env = append(os.Environ(), env...)
	var o bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &o
	if err := cmd.Run(); err != nil {
		tb.Fatalf("child %s %v: %v\n%s", test, env, err, o.String())
	}
	sc := bufio.NewScanner(&o)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), childMarker+" ")
		if !ok {
			continue
		}
		fields := map[string]int64{}
		for kv := range strings.FieldsSeq(rest) {
			k, v, _ := strings.Cut(kv, "=")
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				tb.Fatalf("child %s: bad field %q", test, kv)
			}
			fields[k] = n
		}
		return fields
	}
	tb.Fatalf("child %s %v printed no result:\n%s", test, env, o.String())
	return nil
}
