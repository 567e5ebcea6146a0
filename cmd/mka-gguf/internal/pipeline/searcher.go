package pipeline

import (
	"fmt"
	"os"
	"runtime/debug"
	"slices"

	"github.com/mka-gguf/mka-gguf/cgo"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/calib"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/kld"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/runner"
	"github.com/mka-gguf/mka-gguf/merge"
	"github.com/mka-gguf/mka-gguf/merge/arch"
)

// Searcher holds one loaded, editable model, its contexts and the state of
// a search on it.
type Searcher struct {
	e     *Editor
	cfg   Config
	align [][]int32 // chunks for the alignment passes
	held  [][]int32 // held-back chunks for the rounds
	d     int       // n_embd
	skip  int       // leading rows of each chunk left out of the fit (BOS)
	run   int       // blocks removed per step: the architecture's period (arch.Model.Period)
	diag  bool      // diagonal alignments (arch.AlignDiagonal, or forced: MKA_ALIGN_DIAGONAL)

	// The search's state, per current block: its alignment so far and its
	// Block Influence from the last pass.
	alns []*merge.Alignment
	bi   []float64
	// kept are the last step's fits that its commit left exact (those
	// below its survivor), by current block; streams are the alignment
	// chunks' residual streams entering some blocks, for the next pass to
	// start at one of them (reuse.go).
	kept     map[int]*Candidate
	streams  []*passStream
	passFrom int // current block the last alignment pass started at (0: the tokens)
	// wholePasses makes every pass fit every candidate from the tokens
	// (what reuse.go saves is measured against it).
	wholePasses bool

	sess    sessions  // the llama.cpp contexts
	stats   statsPool // the alignment statistics' memory (passes.go)
	work    work      // what the decodes ran (StepReport)
	quality quality   // the closing quality check (quality.go)
	clock   clock     // the progress lines' ETA (eta.go)
}

// sessions are the search's llama.cpp contexts.
type sessions struct {
	cap   *runner.Session // capture hook, stops early
	orig  *runner.Session // capture hook on Config.Original
	score *runner.Session // logits (cap itself when the chunks are as long)
	// resume: held-back candidates are scored from their first changed
	// block on (captureHeld, runner.Session.RunFrom).
	resume bool
	// layers: every decode leaves out the blocks made identities
	// (runner.SessionOptions.Layers).
	layers bool
}

// work counts the blocks the decodes ran so far, one per block and chunk:
// the held-back decodes' (and their chunks decoded to the logits) and the
// alignment passes' (StepReport.HeldBlocks, HeldLogits, PassBlocks).
type work struct {
	heldBlocks, heldLogits, passBlocks int
}

// NewSearcher prepares a search on e's model.
func NewSearcher(e *Editor, align, held [][]int32, cfg Config) (*Searcher, error) {
	if len(align) == 0 {
		return nil, fmt.Errorf("pipeline: no alignment chunks")
	}
	s := &Searcher{e: e, cfg: cfg, align: align, held: held, d: e.m.NEmbd(), run: max(1, e.arch.Period),
		diag: e.arch.Arch.Align == arch.AlignDiagonal || os.Getenv(forceDiagonal) == "1"}
	if e.m.AddBOS() {
		s.skip = 1
	}
	if s.cfg.Candidates < 1 {
		s.cfg.Candidates = 1
	}
	if s.cfg.MaxStatsBytes <= 0 {
		s.cfg.MaxStatsBytes = 1 << 30
	}
	s.stats = statsPool{d: s.d, threads: cfg.Threads}
	s.clock = clock{last: -1} // (Search sets it)
	if s.quality.on = cfg.Quality && len(held) > 0; s.quality.on {
		s.quality.ref = make([][]kld.Dist, len(held))
	}
	var err error
	if s.sess, err = newSessions(e, align, held, cfg); err != nil {
		return nil, err
	}
	if len(cfg.InitialBI) == e.Blocks() {
		s.bi = slices.Clone(cfg.InitialBI)
	}
	s.alns = make([]*merge.Alignment, e.Blocks())
	e.UseProduct(cfg.Threads)
	return s, nil
}

// forceDiagonal is the environment variable that makes every alignment
// diagonal (test only: how much of a full alignment's gain a post-norm
// architecture's diagonal keeps, measured on llama models).
const forceDiagonal = "MKA_ALIGN_DIAGONAL"

// newSessions opens the contexts of a search on e's model: one chunk per
// decode (the context's output and compute buffers, logits of every token,
// are half those of two, at the same speed), with the decodes of some
// blocks the architecture allows (arch.Model.Resume, which cgo's check of
// the graph must confirm).
func newSessions(e *Editor, align, held [][]int32, cfg Config) (sessions, error) {
	r := e.arch.Resume
	ss := sessions{layers: !cfg.WholeDecodes && r >= arch.ResumeTokens && e.m.CanDecodeLayers() == nil}
	ss.resume = ss.layers && r == arch.ResumeAll && e.m.CanResume() == nil
	// Every decode leaves out the blocks the search has made identities
	// (committed or pending drops): the same logits, fewer blocks run.
	var live func() []int
	if ss.layers {
		live = e.Live
	}
	names := calib.Names(e.arch.Arch.Name)
	t := len(align[0])
	var err error
	if ss.cap, err = runner.NewSession(e.m, runner.SessionOptions{T: t, Threads: cfg.Threads, BatchTokens: t, Capture: true, Names: names, Resumable: ss.layers, Layers: live}); err != nil {
		return ss, err
	}
	if cfg.Original != nil {
		if ss.orig, err = runner.NewSession(cfg.Original, runner.SessionOptions{T: t, Threads: cfg.Threads, BatchTokens: t, Capture: true, Names: names}); err != nil {
			ss.close()
			return ss, err
		}
	}
	switch {
	case len(held) > 0 && len(held[0]) == t:
		ss.score = ss.cap // one context for both (memory)
	case len(held) > 0:
		n := len(held[0])
		if ss.score, err = runner.NewSession(e.m, runner.SessionOptions{T: n, Threads: cfg.Threads, BatchTokens: n, Capture: ss.resume, Names: names, Resumable: ss.layers, Layers: live}); err != nil {
			ss.close()
			return ss, err
		}
	}
	return ss, nil
}

// close frees the contexts.
func (ss *sessions) close() {
	if ss.score != ss.cap {
		ss.score.Close()
	}
	ss.cap.Close()
	ss.orig.Close()
}

// Close frees the contexts and the products' devices.
func (s *Searcher) Close() {
	s.sess.close()
	s.stats.gram.Close()
	s.e.Close()
}

// freeMemory returns what Go's heap and the C heap have freed to the
// system now, not at the next GC cycle: the transient buffers of one
// phase would otherwise stack up to the peak memory.
func freeMemory() {
	debug.FreeOSMemory()
	cgo.TrimHeap()
}
