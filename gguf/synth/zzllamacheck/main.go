// Temporary: checks that llama.cpp loads synth models. Deleted after use.
package main

import (
	"fmt"
	"math"
	"os"
	"path/filepath"

	"github.com/mka-gguf/mka-gguf/cgo"
	"github.com/mka-gguf/mka-gguf/gguf"
	"github.com/mka-gguf/mka-gguf/gguf/synth"
)

func main() {
	dir, _ := os.MkdirTemp("", "llamacheck")
	defer os.RemoveAll(dir)
	bad := 0
	for _, arch := range []string{"llama", "qwen2", "qwen3"} {
		for _, typ := range []gguf.Type{gguf.TypeF32, gguf.TypeF16, gguf.TypeBF16} {
			for _, tied := range []bool{false, true} {
				c := synth.Tiny()
				c.Arch, c.Type, c.TiedEmbeddings = arch, typ, tied
				p := filepath.Join(dir, fmt.Sprintf("%s-%s-%v.gguf", arch, typ, tied))
				if err := synth.Write(p, c); err != nil {
					panic(err)
				}
				m, err := cgo.LoadModel(p, cgo.ModelParams{})
				if err != nil {
					fmt.Println("LOAD FAIL", p, err)
					bad++
					continue
				}
				toks, err := m.Tokenize("Once upon a time there was a little girl", true, false)
				ctx, err2 := cgo.NewContext(m, cgo.ContextParams{NCtx: 128})
				if err != nil || err2 != nil {
					fmt.Println("FAIL", err, err2)
					bad++
					continue
				}
				b := cgo.NewBatch(len(toks))
				for i, t := range toks {
					b.Add(t, i, 0, i == len(toks)-1)
				}
				if err := ctx.Decode(b); err != nil {
					fmt.Println("DECODE FAIL", err)
					bad++
				}
				lg := ctx.Logits(len(toks) - 1)
				finite := len(lg) == c.Vocab
				for _, x := range lg {
					if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
						finite = false
					}
				}
				fmt.Printf("%s %s tied=%v: layers %d vocab %d params %d toks %v logits ok %v [%v %v]\n", arch, typ, tied, m.NLayer(), m.NVocab(), m.NParams(), toks, finite, lg[0], lg[1])
				if !finite {
					bad++
				}
				b.Close()
				ctx.Close()
				m.Close()
			}
		}
	}
	if bad > 0 {
		os.Exit(1)
	}
}
