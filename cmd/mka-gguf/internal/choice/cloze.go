package choice

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"unicode"
)

// ClozeOptions configures BuildCloze; zero fields take the defaults.
type ClozeOptions struct {
	Seed        uint64 // default 1
	Distractors int    // wrong endings per task (default 3)
	MinContext  int    // fewest context sentences (default 2)
	MaxContext  int    // most context sentences (default 5)
	MaxTasks    int    // 0: one task per usable passage
	// Gap is how many neighbouring passages on each side may not give
	// distractors (default 5), so that they come from other stories.
	Gap int
}

// BuildCloze builds a story-cloze test from text: passages are paragraphs
// (separated by blank lines) of at least MinContext+1 sentences. For each,
// the context is its first m sentences (m drawn uniformly from MinContext
// to min(MaxContext, sentences−1)), the right ending is sentence m+1, and
// the wrong endings are sentences drawn uniformly from passages more than
// Gap paragraphs away, each between half and twice the right ending's
// length in characters (so that length alone does not tell), all
// different. The right ending's place is drawn uniformly. The same text
// and options give the same tasks.
func BuildCloze(text string, opt ClozeOptions) ([]Task, error) {
	if opt.Seed == 0 {
		opt.Seed = 1
	}
	if opt.Distractors <= 0 {
		opt.Distractors = 3
	}
	if opt.MinContext <= 0 {
		opt.MinContext = 2
	}
	if opt.MaxContext < opt.MinContext {
		opt.MaxContext = max(5, opt.MinContext)
	}
	if opt.Gap <= 0 {
		opt.Gap = 5
	}
	var paras [][]string
	for _, p := range strings.Split(strings.ReplaceAll(text, "\r\n", "\n"), "\n\n") {
		if s := Sentences(p); len(s) > 0 {
			paras = append(paras, s)
		}
	}
	r := rand.New(rand.NewPCG(opt.Seed, 0x636c6f7a65)) // "cloze"
	var tasks []Task
	for i, sents := range paras {
		if len(sents) < opt.MinContext+1 {
			continue
		}
		if opt.MaxTasks > 0 && len(tasks) == opt.MaxTasks {
			break
		}
		m := opt.MinContext + r.IntN(min(opt.MaxContext, len(sents)-1)-opt.MinContext+1)
		truth := sents[m]
		endings := []string{truth}
		for try := 0; len(endings) <= opt.Distractors && try < 1000; try++ {
			j := r.IntN(len(paras))
			if j >= i-opt.Gap && j <= i+opt.Gap {
				continue
			}
			s := paras[j][r.IntN(len(paras[j]))]
			if 2*len(s) < len(truth) || len(s) > 2*len(truth) || contains(endings, s) {
				continue
			}
			endings = append(endings, s)
		}
		if len(endings) <= opt.Distractors {
			continue // no distractors of a fitting length
		}
		label := r.IntN(len(endings))
		endings[0], endings[label] = endings[label], endings[0]
		tasks = append(tasks, Task{Context: strings.Join(sents[:m], " "), Endings: endings, Label: label})
	}
	if len(tasks) == 0 {
		return nil, fmt.Errorf("no passage of %d or more sentences (paragraphs are separated by blank lines)", opt.MinContext+1)
	}
	return tasks, nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// Sentences splits a paragraph into sentences: each ends at '.', '!' or
// '?' (with any closing quotes after it) followed by white space and an
// upper-case letter or an opening quote, or at the end of the text.
// Whitespace inside is folded to single spaces.
func Sentences(p string) []string {
	rs := []rune(strings.Join(strings.Fields(p), " "))
	var out []string
	start := 0
	for i := 0; i < len(rs); i++ {
		if rs[i] != '.' && rs[i] != '!' && rs[i] != '?' {
			continue
		}
		end := i + 1
		for end < len(rs) && (rs[end] == '"' || rs[end] == '\'' || rs[end] == '”' || rs[end] == '’') {
			end++
		}
		if end+1 < len(rs) && rs[end] == ' ' && (unicode.IsUpper(rs[end+1]) || rs[end+1] == '"' || rs[end+1] == '“') {
			out = append(out, string(rs[start:end]))
			start, i = end+1, end
		}
	}
	if s := strings.TrimSpace(string(rs[start:])); s != "" {
		out = append(out, s)
	}
	return out
}
