package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/mka-gguf/mka-gguf/gguf"
	"github.com/mka-gguf/mka-gguf/quant"
)

func init() {
	commands = append(commands, &cli.Command{
		Name:      "quantize",
		Usage:     "quantize a GGUF model with llama.cpp's quantizer (" + strings.Join(quant.Names()[:8], ", ") + ", ...)",
		ArgsUsage: "IN.gguf OUT.gguf TYPE",
		Flags: []cli.Flag{
			threadsFlag,
			&cli.BoolFlag{Name: "allow-requantize", Usage: "allow requantizing already quantized tensors"},
			&cli.BoolFlag{Name: "leave-output", Usage: "keep output.weight unquantized"},
			&cli.BoolFlag{Name: "pure", Usage: "quantize every tensor to TYPE (no per-tensor mixture rules)"},
			&cli.BoolFlag{Name: "force", Aliases: []string{"f"}, Usage: "overwrite OUT if it exists"},
			&cli.BoolFlag{Name: "no-verify", Usage: "skip the llama.cpp load-and-decode check of OUT"},
			&cli.StringFlag{Name: "imatrix", Usage: "importance matrix (GGUF, from mka-gguf imatrix or llama.cpp's imatrix tool)"},
		},
		Action: runQuantize,
	})
}

func runQuantize(c *cli.Context) error {
	if c.NArg() != 3 {
		return usageError(c, "want IN.gguf OUT.gguf TYPE, got %d arguments", c.NArg())
	}
	in, out := c.Args().Get(0), c.Args().Get(1)
	ft, err := quant.Parse(c.Args().Get(2))
	if err != nil {
		return err
	}
	if err := checkOutput(in, out, c.Bool("force")); err != nil {
		return err
	}
	f, err := gguf.Open(in)
	if err != nil {
		return err
	}
	blocks, _ := f.Uint(f.Arch() + ".block_count")
	f.Close()
	var imat map[string][]float32
	if p := c.String("imatrix"); p != "" {
		im, err := quant.LoadImatrix(p)
		if err != nil {
			return err
		}
		imat = im.Values()
	}
	if err := writeVerified(c.Context, out, "quantized", int(blocks), !c.Bool("no-verify"), func(tmp string) error {
		return quant.File(in, tmp, ft, quant.Options{Threads: threads(c), AllowRequantize: c.Bool("allow-requantize"),
			LeaveOutput: c.Bool("leave-output"), Pure: c.Bool("pure"), Imatrix: imat})
	}); err != nil {
		return err
	}
	si, _ := os.Stat(in)
	so, _ := os.Stat(out)
	fmt.Printf("wrote %s: %s, %s -> %s\n", out, ft.Name, human(uint64(si.Size())), human(uint64(so.Size())))
	return nil
}
