package pipeline

import (
	"fmt"
	"time"
)

// clock is the search's clock for the progress lines' ETA: the step under
// way and Search's last one (−1 outside Search), when the current phase
// (an alignment pass or a held-back round) started, and how long the last
// pass and round took (0: none yet).
type clock struct {
	step, last  int
	phaseStart  time.Time
	pass, round time.Duration
}

// eta returns ", search ETA …" for a progress line of the phase under way
// (an alignment pass when inPass, else a held-back round), frac of it done:
// the rest of the phase at its rate so far, plus the round of this step
// after a pass, plus a pass and a round for every later step, each as long
// as the last one measured (a pass not yet measured, as predicted). ""
// outside Search or before any progress.
func (c *clock) eta(inPass bool, frac float64, predicted time.Duration) string {
	if c.last < 0 || frac <= 0 {
		return ""
	}
	spent := time.Since(c.phaseStart)
	phase := time.Duration(float64(spent) / frac)
	left := phase - spent
	pass, round := c.pass, c.round
	if inPass && pass == 0 {
		pass = phase
	}
	if pass == 0 {
		pass = predicted
	}
	if !inPass && round == 0 {
		round = phase
	}
	if inPass {
		left += round
	}
	left += time.Duration(c.last-c.step) * (pass + round)
	return fmt.Sprintf(", search ETA %s", left.Round(time.Second))
}

// eta is clock.eta with a pass predicted by Config.ChunkSeconds: the
// alignment chunks through every current block.
func (s *Searcher) eta(inPass bool, frac float64) string {
	pass := float64(len(s.align)) * s.cfg.ChunkSeconds * float64(s.e.Blocks()) / float64(s.e.m.NLayer())
	return s.clock.eta(inPass, frac, time.Duration(pass*float64(time.Second)))
}
