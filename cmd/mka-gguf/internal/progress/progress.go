// Package progress draws progress lines on stderr: what is being done, how
// far it is, the rate and the time left. On a terminal one line is redrawn
// in place; otherwise (CI logs) a line is printed every 10 % or 10 seconds.
package progress

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// Quiet turns every bar off (the --quiet flag).
var Quiet bool

// Output is where bars draw (stderr by default).
var Output io.Writer = os.Stderr

// Bar is one progress display. It is safe for concurrent use.
type Bar struct {
	mu       sync.Mutex
	what     string
	unit     string
	total    int
	done     int
	start    time.Time
	last     time.Time
	lastPct  int
	drawn    int // done as last drawn (-1: never)
	tty      bool
	finished bool
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// New starts a bar for total units of work (unit names them, e.g.
// "samples").
func New(what string, total int, unit string) *Bar {
	return &Bar{what: what, unit: unit, total: total, start: time.Now(), tty: isTerminal(Output), lastPct: -1, drawn: -1}
}

// Set records that done units are finished and redraws when due. extra is
// appended to the line (e.g. "4100 tok/s").
func (b *Bar) Set(done int, extra string) {
	if b == nil || Quiet {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if done == b.drawn && done >= b.total {
		return // the end, drawn already
	}
	b.done = done
	now := time.Now()
	pct := 100
	if b.total > 0 {
		pct = done * 100 / b.total
	}
	if b.tty {
		if now.Sub(b.last) < 100*time.Millisecond && done < b.total {
			return
		}
	} else if pct/10 == b.lastPct/10 && now.Sub(b.last) < 10*time.Second && done < b.total {
		return
	}
	b.last, b.lastPct = now, pct
	b.draw(extra)
}

func (b *Bar) draw(extra string) {
	b.drawn = b.done
	el := time.Since(b.start)
	rate := float64(b.done) / el.Seconds()
	eta := "?"
	if b.done > 0 && b.total >= b.done {
		eta = (time.Duration(float64(el) / float64(b.done) * float64(b.total-b.done))).Round(time.Second).String()
	}
	line := fmt.Sprintf("%s %3d%% %d/%d %s, %.1f %s/s, %s elapsed, ETA %s",
		b.what, b.done*100/max(b.total, 1), b.done, b.total, b.unit, rate, b.unit, el.Round(100*time.Millisecond), eta)
	if extra != "" {
		line += ", " + extra
	}
	if b.tty {
		fmt.Fprintf(Output, "\r\033[K%s", line)
	} else {
		fmt.Fprintln(Output, strings.TrimSpace(line))
	}
}

// Finish records that all the work is done, draws the bar at 100 % unless
// it shows that already, and finishes it (Done). Call it on success; a
// deferred Done then does nothing.
func (b *Bar) Finish() {
	if b == nil || Quiet {
		return
	}
	b.mu.Lock()
	if !b.finished {
		if b.total > 0 {
			b.done = b.total
		}
		if b.drawn != b.done {
			b.draw("")
		}
	}
	b.mu.Unlock()
	b.Done()
}

// Done finishes the bar (a final newline on a terminal).
func (b *Bar) Done() {
	if b == nil || Quiet {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.finished {
		return
	}
	b.finished = true
	if b.tty {
		fmt.Fprintln(Output)
	}
}

// Printf prints a status line on stderr unless Quiet.
func Printf(format string, args ...any) {
	if Quiet {
		return
	}
	fmt.Fprintf(Output, format, args...)
}

// SetTotal changes the amount of work (when it is known only later).
func (b *Bar) SetTotal(total int) {
	if b == nil {
		return
	}
	b.mu.Lock()
	b.total = total
	b.mu.Unlock()
}

// Phases numbers the phases of a long job from its start: Next prints
// "[2/5] search: …" on stderr (unless Quiet). The names are known up front,
// so that the count is right from the first line; a nil *Phases prints
// nothing.
type Phases struct {
	names []string
	next  int
}

// NewPhases returns the phases of a job, in order.
func NewPhases(names ...string) *Phases { return &Phases{names: names} }

// Next prints the start of the phase called name (the next one of that
// name in the list) with detail after it.
func (p *Phases) Next(name, detail string) {
	if p == nil {
		return
	}
	k := p.next
	for k < len(p.names) && p.names[k] != name {
		k++
	}
	if k == len(p.names) { // not planned: number it after the others
		p.names = append(p.names, name)
	}
	p.next = k + 1
	line := fmt.Sprintf("[%d/%d] %s", k+1, len(p.names), name)
	if detail != "" {
		line += ": " + detail
	}
	Printf("%s\n", line)
}
