package main

// One convention for machine-readable output: --json prints a command's
// result as JSON on stdout (the human text then goes to stderr), --json-file
// F writes the same JSON to F (a declared output, see internal/files). Field
// names are snake_case, the same quantity has the same name in every
// report (ppl_stderr), steps are numbered from 1 as they are printed, and
// every report that describes a written file carries its sha256. The report
// types live with the work (shrink.Report, compare.Results, bench.Report).

import (
	"encoding/json"
	"io"
	"os"

	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/report"

	"github.com/urfave/cli/v2"
)

// jsonFlag and jsonFileFlag are the two flags of the convention. -o is
// never --json-file: where a command has -o it names the command's own
// output (imatrix's matrix, make-choices' tasks, compare's folder).
func jsonFlag() cli.Flag {
	return &cli.BoolFlag{Name: "json", Usage: "print the result as JSON on stdout (the text output goes to stderr)"}
}

func jsonFileFlag() cli.Flag {
	return &cli.StringFlag{Name: "json-file", Usage: "write the result as JSON to this `FILE`"}
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

// printJSONIf prints v on stdout when --json was given.
func printJSONIf(c *cli.Context, v any) error {
	if !c.Bool("json") {
		return nil
	}
	return printJSON(v)
}

// printJSON prints v as indented JSON on stdout.
func printJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// head starts the report of command cmd (docs/json.md).
func head(cmd string) report.Head { return report.Head{Version: version, Command: cmd} }
