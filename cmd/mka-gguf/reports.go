package main

// One convention for machine-readable output: --json prints a command's
// result as JSON on stdout (the human text then goes to stderr), --json-file
// F writes the same JSON to F (a declared output, see outputs.go). Field
// names are snake_case, the same quantity has the same name in every
// report (ppl_stderr), steps are numbered from 1 as they are printed, and
// every report that describes a written file carries its sha256.

import (
	"encoding/json"
	"io"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/mka-gguf/mka-gguf/merge"
)

// jsonFlag and jsonFileFlag are the two flags of the convention; -o is an
// alias of --json-file where the command has no other -o.
func jsonFlag() cli.Flag {
	return &cli.BoolFlag{Name: "json", Usage: "print the result as JSON on stdout (the text output goes to stderr)"}
}

func jsonFileFlag(o bool) cli.Flag {
	f := &cli.StringFlag{Name: "json-file", Usage: "write the result as JSON to this `FILE`"}
	if o {
		f.Aliases = []string{"o"}
	}
	return f
}

// forceFlag is every command's --force.
func forceFlag() cli.Flag {
	return &cli.BoolFlag{Name: "force", Usage: "overwrite output files that exist"}
}

// textOut is where a command prints its human-readable result: stdout,
// or stderr when --json claims stdout.
func textOut(c *cli.Context) io.Writer {
	if c.Bool("json") {
		return os.Stderr
	}
	return os.Stdout
}

// writeJSONTo writes v as indented JSON to the temporary file of f (nil:
// nothing asked for).
func writeJSONTo(f *outFile, v any) error {
	if f == nil {
		return nil
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(f.Tmp, append(b, '\n'), 0o644)
}

// printJSONIf prints v on stdout when --json was given.
func printJSONIf(c *cli.Context, v any) error {
	if !c.Bool("json") {
		return nil
	}
	return printJSON(v)
}

// reportStep is one plan step as reports record it: a drop names the
// dropped block, a fusion its two blocks and λ, the weight of the first.
type reportStep struct {
	Step       int      `json:"step"` // 1-based, as printed
	Kind       string   `json:"kind"` // "drop" or "fuse"
	Block      *int     `json:"block,omitempty"`
	Blocks     []int    `json:"blocks,omitempty"`
	Lambda     *float64 `json:"lambda,omitempty"`
	Similarity float64  `json:"similarity"`
}

// reportSteps converts plan steps for a report.
func reportSteps(steps []merge.Step) []reportStep {
	out := make([]reportStep, len(steps))
	for i, s := range steps {
		r := reportStep{Step: i + 1, Kind: s.Kind.String(), Similarity: s.Similarity}
		if s.Kind == merge.StepDrop {
			b := s.Blocks[0]
			r.Block = &b
		} else {
			l := s.Lambda
			r.Blocks, r.Lambda = []int{s.Blocks[0], s.Blocks[1]}, &l
		}
		out[i] = r
	}
	return out
}
