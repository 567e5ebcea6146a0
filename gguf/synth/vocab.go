package synth

import (
	"fmt"
	"slices"
	"strings"
	"sync"
)

// words are common English words for the tokenizer's normal tokens.
var words = strings.Fields(`
the of and to in is was he for it with as his on be at by had are but from or
she an they which you one we all were her would there their will when who him
been has more if no out do so can what up said about other into than its time
only could new them man some these then two first may any like now my such make
over our even most me state after also made many did must before back see
through way where get much go well your know should down work year because come
people just say each those take day good how long very little world way own
here life still old great think both between under never last house went home
while place again day small found thought went might get school every mother
father child children girl boy tell ran saw big happy sad play friend dog cat
bird tree sun sky water ball park toy fun look want help love named once upon
day lily tim ben mom dad went time there was very loved liked wanted said asked
smiled felt played found saw looked they her with that on for it not
`)

// letters are the lowercase letters.
const letters = "abcdefghijklmnopqrstuvwxyz"

// normalTokens lists every normal token candidate in vocabulary order,
// without duplicates: "▁", the letters with and without "▁", the prefixes
// of each word with "▁" (so SentencePiece merges can build the word),
// digits and punctuation, then letter pairs, triples and quadruples with
// and without "▁" (up to maxNormalTokens).
var normalTokens = sync.OnceValue(func() []string {
	var out []string
	seen := map[string]bool{}
	add := func(s string) {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	const sp = "▁"
	add(sp)
	for _, c := range letters {
		add(sp + string(c))
	}
	for _, c := range letters {
		add(string(c))
	}
	for _, w := range words {
		for i := 2; i <= len(w); i++ {
			add(sp + w[:i])
		}
	}
	for _, s := range strings.Split("0 1 2 3 4 5 6 7 8 9 . , ! ? ' \" - : ; ( )", " ") {
		add(s)
	}
	for _, a := range letters {
		for _, b := range letters {
			add(sp + string(a) + string(b))
			add(string(a) + string(b))
		}
	}
	for _, a := range letters {
		for _, b := range letters {
			for _, c := range letters {
				add(sp + string(a) + string(b) + string(c))
				add(string(a) + string(b) + string(c))
			}
		}
	}
	// Letter quadruples, as many as a Llama-3-sized vocabulary needs.
	for i := 0; len(out) < maxNormalTokens; i++ {
		q := string([]byte{letters[i/17576], letters[i/676%26], letters[i/26%26], letters[i%26]})
		add(sp + q)
		add(q)
	}
	return out
})

// maxNormalTokens bounds the normal token candidates: enough for a
// 128,256-token (Llama 3) vocabulary and some more.
const maxNormalTokens = 150000

// maxVocab returns the largest vocabulary: every token candidate.
func maxVocab(noByteFallback bool) int {
	if !noByteFallback {
		return 3 + 256 + len(normalTokens())
	}
	return 3 + len(plainChars()) + len(normalTokens()) - plainOverlap()
}

// plainChars are the single-character tokens of a vocabulary without byte
// fallback: tab, newline, carriage return and printable ASCII except the
// space (which SentencePiece writes as "▁"), so that any ASCII text can be
// encoded and any other character cannot.
var plainChars = sync.OnceValue(func() []string {
	out := []string{"\t", "\n", "\r"}
	for c := byte('!'); c <= '~'; c++ {
		out = append(out, string(c))
	}
	return out
})

// plainOverlap counts the plain characters that are also normal tokens.
var plainOverlap = sync.OnceValue(func() int {
	n := 0
	for _, s := range normalTokens() {
		if slices.Contains(plainChars(), s) {
			n++
		}
	}
	return n
})

// Token types of llama.cpp (enum llama_token_type).
const (
	tokenNormal  = 1
	tokenUnknown = 2
	tokenControl = 3
	tokenByte    = 6
)

// vocab returns n tokens with their scores and types: <unk>, <s>, </s>,
// the 256 byte tokens <0x00>..<0xFF> (or, with noByteFallback, the
// plainChars instead), then normal tokens with decreasing scores. n must be
// between MinVocab and maxVocab(noByteFallback).
func vocab(n int, noByteFallback bool) (tokens []string, scores []float32, types []int32) {
	tokens = make([]string, 0, n)
	scores = make([]float32, 0, n)
	types = make([]int32, 0, n)
	seen := map[string]bool{}
	add := func(s string, score float32, typ int32) {
		tokens = append(tokens, s)
		scores = append(scores, score)
		types = append(types, typ)
		seen[s] = true
	}
	add("<unk>", 0, tokenUnknown)
	add("<s>", 0, tokenControl)
	add("</s>", 0, tokenControl)
	if noByteFallback {
		for _, s := range plainChars() {
			add(s, 0, tokenNormal)
		}
	} else {
		for b := range 256 {
			add(fmt.Sprintf("<0x%02X>", b), 0, tokenByte)
		}
	}
	for i, s := range normalTokens() {
		if len(tokens) == n {
			break
		}
		if !seen[s] {
			add(s, -float32(i), tokenNormal)
		}
	}
	return tokens, scores, types
}
