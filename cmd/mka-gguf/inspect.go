package main

import (
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/files"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/report"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/shrink"
	"github.com/mka-gguf/mka-gguf/gguf"
)

func init() {
	commands = append(commands, &cli.Command{
		Name:      "inspect",
		Usage:     "show a GGUF model's architecture, shapes, tensor types and sizes",
		ArgsUsage: "MODEL.gguf",
		Flags:     []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print the same as a JSON object"}, jsonFileFlag(), forceFlag(), modelFlag},
		Action:    runInspect,
	})
}

// typeBytes is the tensor count and bytes of one ggml type.
type typeBytes struct {
	Type    string `json:"type"`
	Tensors int    `json:"tensors"`
	Bytes   uint64 `json:"bytes"`
}

// inspectReport is what inspect prints.
type inspectReport struct {
	report.Head
	report.In
	Size           int64             `json:"file_size"`
	GGUFVersion    uint32            `json:"gguf_version"`
	Architecture   string            `json:"architecture"`
	Name           string            `json:"name"`
	BlockCount     uint64            `json:"block_count"`
	EmbeddingLen   uint64            `json:"embedding_length"`
	FeedForwardLen uint64            `json:"feed_forward_length"`
	HeadCount      uint64            `json:"head_count"`
	HeadCountKV    uint64            `json:"head_count_kv"`
	ContextLength  uint64            `json:"context_length"`
	Vocab          uint64            `json:"vocab"`
	TokenizerModel string            `json:"tokenizer_model"`
	FileType       string            `json:"file_type"`
	TensorCount    int               `json:"tensor_count"`
	Parameters     uint64            `json:"parameters"`
	BitsPerWeight  float64           `json:"bits_per_weight"`
	ByType         []typeBytes       `json:"tensor_types"`
	BlockTensors   []string          `json:"block_tensors"`
	Mergeable      bool              `json:"mergeable"`
	NotMergeable   string            `json:"not_mergeable_reason,omitempty"`
	MergeNotes     []string          `json:"merge_notes,omitempty"`
	Provenance     map[string]string `json:"mka,omitempty"`
}

var blk0 = regexp.MustCompile(`^blk\.0\.`)

func inspect(path string) (*inspectReport, error) {
	f, err := gguf.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	s, err := f.Summary()
	if err != nil {
		return nil, err
	}
	r := &inspectReport{
		Head: head("inspect"), In: report.In{Input: path}, Size: f.Size, GGUFVersion: f.Version,
		Architecture: s.Architecture, Name: s.Name, BlockCount: s.BlockCount,
		EmbeddingLen: s.EmbeddingLength, FeedForwardLen: s.FeedForwardLength,
		HeadCount: s.HeadCount, HeadCountKV: s.HeadCountKV, ContextLength: s.ContextLength,
		Vocab: s.VocabSize, TokenizerModel: s.TokenizerModel, FileType: s.FileType,
		TensorCount: len(f.Tensors), Parameters: s.Parameters, BitsPerWeight: s.BitsPerWeight,
	}
	by := map[gguf.Type]*typeBytes{}
	for _, t := range f.Tensors {
		tb := by[t.Type]
		if tb == nil {
			tb = &typeBytes{Type: t.Type.String()}
			by[t.Type] = tb
		}
		tb.Tensors++
		tb.Bytes += t.Size()
		if blk0.MatchString(t.Name) {
			r.BlockTensors = append(r.BlockTensors, t.Name)
		}
	}
	for _, tb := range by {
		r.ByType = append(r.ByType, *tb)
	}
	sort.Slice(r.ByType, func(i, j int) bool { return r.ByType[i].Bytes > r.ByType[j].Bytes })
	// Mergeable exactly when the default merge runs (its removal count
	// included); the notes say what it does unlike a llama's.
	b, err := shrink.Inspect(f)
	if err == nil {
		err = b.Mergeable()
	}
	if err != nil {
		r.NotMergeable = strings.TrimPrefix(err.Error(), path+": ")
	} else {
		r.Mergeable, r.MergeNotes = true, b.Notes()
	}
	for _, kv := range f.KVs {
		if strings.HasPrefix(kv.Key, "mka.") {
			if r.Provenance == nil {
				r.Provenance = map[string]string{}
			}
			v := kv.Value.V
			if a, ok := v.(gguf.Array); ok {
				v = a.Values
			}
			r.Provenance[strings.TrimPrefix(kv.Key, "mka.")] = fmt.Sprint(v)
		}
	}
	return r, nil
}

func runInspect(c *cli.Context) error {
	args := posArgs(c)
	if len(args) != 1 {
		return usageError(c, "want one MODEL.gguf, got %s", argumentCount(len(args)))
	}
	outs := files.New(c.Bool("force"), files.Input{What: "MODEL", Path: args[0]})
	jsonF := outs.File(c.String("json-file"), typedName(c, "json-file"))
	if err := outs.Begin(); err != nil {
		return err
	}
	defer outs.Cleanup()
	r, err := inspect(args[0])
	if err != nil {
		return err
	}
	if jsonF != nil || c.Bool("json") {
		if r.InputSHA256, err = files.SHA256(args[0]); err != nil {
			return err
		}
	}
	if err := outs.CommitJSON(c.Context, jsonF, r); err != nil {
		return err
	}
	if c.Bool("json") {
		return printJSON(r)
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	row := func(k string, v any) { fmt.Fprintf(w, "%s\t%v\n", k, v) }
	row("file", fmt.Sprintf("%s (%s, GGUF v%d)", r.Input, files.Human(uint64(r.Size)), r.GGUFVersion))
	row("architecture", r.Architecture)
	row("name", r.Name)
	row("blocks", r.BlockCount)
	row("embedding length", r.EmbeddingLen)
	row("feed-forward length", r.FeedForwardLen)
	row("heads / KV heads", fmt.Sprintf("%d / %d", r.HeadCount, r.HeadCountKV))
	row("context length", r.ContextLength)
	row("vocabulary", fmt.Sprintf("%d (%s)", r.Vocab, r.TokenizerModel))
	row("file type", r.FileType)
	row("parameters", fmt.Sprintf("%d (%.2f bits/weight)", r.Parameters, r.BitsPerWeight))
	row("tensors", r.TensorCount)
	for _, tb := range r.ByType {
		row("  "+tb.Type, fmt.Sprintf("%d tensors, %s", tb.Tensors, files.Human(tb.Bytes)))
	}
	row("tensors of one block", strings.Join(r.BlockTensors, " "))
	if r.Mergeable && len(r.MergeNotes) > 0 {
		row("mergeable", "yes: "+strings.Join(r.MergeNotes, "; "))
	} else if r.Mergeable {
		row("mergeable", "yes")
	} else {
		row("mergeable", "no: "+r.NotMergeable)
	}
	if len(r.Provenance) > 0 {
		keys := make([]string, 0, len(r.Provenance))
		for k := range r.Provenance {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			row("mka."+k, r.Provenance[k])
		}
	}
	return w.Flush()
}
