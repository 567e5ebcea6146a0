package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/mka-gguf/mka-gguf/gguf"
	"github.com/mka-gguf/mka-gguf/gguf/synth"
)

func init() {
	commands = append(commands, &cli.Command{
		Name:      "synth",
		Usage:     "write a llama-architecture GGUF model with random weights (for demos, tests and benchmarks)",
		ArgsUsage: "OUT.gguf",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "preset", Value: "demo", Usage: "tiny | demo | 1gb"},
			&cli.StringFlag{Name: "arch", Usage: "llama, qwen2 or qwen3 (default: the preset's)"},
			&cli.IntFlag{Name: "blocks", Usage: "decoder blocks (default: the preset's)"},
			&cli.StringFlag{Name: "type", Usage: "weight type: F32, F16 or BF16 (default: the preset's)"},
			&cli.Int64Flag{Name: "seed", Value: 1, Usage: "random seed"},
			&cli.BoolFlag{Name: "no-byte-fallback", Usage: "a vocabulary without <0xNN> byte tokens: text with a non-ASCII character cannot be encoded (for tests)"},
			&cli.BoolFlag{Name: "force", Aliases: []string{"f"}, Usage: "overwrite OUT if it exists"},
		},
		Action: runSynth,
	})
}

func runSynth(c *cli.Context) error {
	if c.NArg() != 1 {
		return usageError(c, "want one OUT.gguf, got %d arguments", c.NArg())
	}
	out := c.Args().First()
	if err := checkOutput("", out, c.Bool("force")); err != nil {
		return err
	}
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
		cfg.Arch = a
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
	if err := synth.Write(out, cfg); err != nil {
		return err
	}
	fmt.Printf("wrote %s: %s, %d blocks, embd %d, %s weights, %s (random weights)\n", out, cfg.Arch, cfg.Blocks, cfg.Embd, cfg.Type, human(uint64(synth.Size(cfg))))
	return nil
}
