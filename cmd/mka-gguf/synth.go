package main

import (
	"fmt"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/files"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/report"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/usage"
	"github.com/mka-gguf/mka-gguf/gguf"
	"github.com/mka-gguf/mka-gguf/gguf/synth"
)

func init() {
	commands = append(commands, &cli.Command{
		Name:      "synth",
		Usage:     "write a GGUF model with random weights in one of the architectures the merge accepts (for demos, tests and benchmarks)",
		ArgsUsage: "OUT.gguf",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "preset", Value: "demo", Usage: strings.Join(synthPresets, " | ")},
			&cli.StringFlag{Name: "arch", Usage: strings.Join(synth.Archs(), ", ") + " (gemma and gemma2 tied to the token embedding, olmo2 and internlm2 untied)", DefaultText: "the preset's"},
			&cli.IntFlag{Name: "blocks", Usage: "decoder blocks, ≥ 1", DefaultText: "the preset's"},
			&cli.StringFlag{Name: "type", Usage: "weight type: F32, F16 or BF16", DefaultText: "the preset's"},
			&cli.Int64Flag{Name: "seed", Value: 1, Usage: "random seed"},
			&cli.BoolFlag{Name: "no-byte-fallback", Usage: "a vocabulary without <0xNN> byte tokens: text with a non-ASCII character cannot be encoded (for tests)"},
			forceFlag(),
			jsonFlag(),
			jsonFileFlag(),
		},
		Action: runSynth,
	})
}

// synthPresets are synth's --preset values.
var synthPresets = []string{"tiny", "demo", "1gb"}

// checkSynth checks synth's choices and --blocks.
func checkSynth(c *cli.Context) error {
	if _, err := usage.Choice("preset", c.String("preset"), synthPresets); err != nil {
		return err
	}
	if a := c.String("arch"); a != "" {
		if _, err := usage.Choice("arch", a, synth.Archs()); err != nil {
			return err
		}
	}
	if t := c.String("type"); t != "" && !slices.Contains([]string{"F32", "F16", "BF16"}, strings.ToUpper(t)) {
		return usage.Errorf("--type %q is not one of F32, F16, BF16 (synth writes float weights; quantize the model afterwards)", t)
	}
	if c.IsSet("blocks") {
		return usage.AtLeast("blocks", c.Int("blocks"), 1, "blocks")
	}
	return nil
}

func runSynth(c *cli.Context) error {
	if c.NArg() != 1 {
		return usageError(c, "want one OUT.gguf, got %s", argumentCount(c.NArg()))
	}
	out := c.Args().First()
	outs := files.New(c.Bool("force"))
	outF := outs.File(out, "OUT")
	jsonF := outs.File(c.String("json-file"), typedName(c, "json-file"))
	if err := outs.Begin(); err != nil {
		return err
	}
	defer outs.Cleanup()
	var cfg synth.Config
	if c.String("preset") == "demo" {
		// Deep enough that merging shows a plan, small enough to be instant.
		cfg = synth.Tiny()
		cfg.Blocks = 8
	} else {
		var err error
		if cfg, err = synth.Preset(c.String("preset")); err != nil {
			return err
		}
	}
	if a := c.String("arch"); a != "" {
		cfg.SetArch(a)
	}
	if b := c.Int("blocks"); b > 0 {
		cfg.Blocks = b
	}
	if t := c.String("type"); t != "" {
		typ, err := gguf.ParseType(t)
		if err != nil {
			return err
		}
		cfg.Type = typ
	}
	cfg.Seed = c.Int64("seed")
	cfg.NoByteFallback = c.Bool("no-byte-fallback")
	if err := synth.Write(outF.Tmp, cfg); err != nil {
		return err
	}
	sum, err := files.SHA256(outF.Tmp)
	if err != nil {
		return err
	}
	res := synthResult{Head: head("synth"), Out: report.Out{Output: out, OutputSHA256: sum}, Arch: cfg.Arch, Blocks: cfg.Blocks, Embd: cfg.Embd,
		Quant: cfg.Type.String(), Bytes: synth.Size(cfg), Seed: cfg.Seed}
	if err := outs.CommitJSON(c.Context, jsonF, res); err != nil {
		return err
	}
	fmt.Fprintf(textOut(c), "wrote %s: %s, %d blocks, embd %d, %s weights, %s (random weights)\n", out, cfg.Arch, cfg.Blocks, cfg.Embd, cfg.Type, files.Human(uint64(synth.Size(cfg))))
	return printJSONIf(c, res)
}

// synthResult is what synth prints with --json (docs/json.md).
type synthResult struct {
	report.Head
	report.Out
	Arch   string `json:"arch"`
	Blocks int    `json:"blocks"`
	Embd   int    `json:"embd"`
	Quant  string `json:"quant"` // the weights' type
	Bytes  int64  `json:"bytes"`
	Seed   int64  `json:"seed"`
}
