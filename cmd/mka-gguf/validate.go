package main

// One place that validates the flags of a command before any work:
// validateFlags runs as each command's Before (after flag parsing, before
// the action). merge, compare and bench turn their flags into the
// library's Options and call its checks, which also read what depends on
// the model (its training context, its block count) from the GGUF
// metadata; the other commands' few numbers are checked here. Every
// message states the valid range.

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"

	"github.com/urfave/cli/v2"

	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/calib"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/shrink"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/usage"
)

// validateFlags checks every flag of the command c before any work; see
// the file comment.
func validateFlags(c *cli.Context) error {
	err := checkThreads(c)
	if err == nil {
		switch c.Command.Name {
		case "merge":
			err = checkOptions(c, 2, mergeOptions)
		case "compare":
			err = checkOptions(c, 1, compareOptions)
		case "bench":
			err = benchOptions(c).Validate()
		case "analyze", "imatrix":
			err = checkCalib(c)
		case "eval":
			err = checkEval(c)
		case "synth":
			err = checkSynth(c)
		}
	}
	return usageFor(c, err)
}

// usageFor turns a *usage.Error (a refused option) into the command's
// usage error; other errors pass.
func usageFor(c *cli.Context, err error) error {
	var ue *usage.Error
	if errors.As(err, &ue) {
		return usageError(c, "%s", ue.Error())
	}
	return err
}

// checker is a library's Options: Check validates them and what depends
// on the model, and returns the warnings to show.
type checker interface {
	Check() ([]string, error)
}

// checkOptions builds the command's Options from its flags and checks
// them, printing the warnings, when the command has its args file
// arguments (else the action says what is wrong with them).
func checkOptions[T checker](c *cli.Context, args int, build func(*cli.Context) (T, error)) error {
	if len(posArgs(c)) != args {
		return nil
	}
	o, err := build(c)
	if err != nil {
		return err
	}
	warnings, err := o.Check()
	for _, w := range warnings {
		warnf("%s", w)
	}
	return err
}

// checkThreads refuses a given --threads below 1 and lowers one above the
// CPUs this process may use, with a warning.
func checkThreads(c *cli.Context) error {
	if !c.IsSet("threads") {
		return nil
	}
	n, most := c.Int("threads"), runtime.NumCPU()
	if err := usage.AtLeast("threads", n, 1, "threads"); err != nil {
		return err
	}
	if n > most {
		warnf("--threads %d is more than the %d CPUs this process may use; using %d", n, most, most)
		return c.Set("threads", strconv.Itoa(most))
	}
	return nil
}

// checkCalib checks analyze's and imatrix's calibration flags and warns
// of a given --ctx above the model's training context.
func checkCalib(c *cli.Context) error {
	analyze := c.Command.Name == "analyze"
	if err := calibSpec(c).Validate(analyze); err != nil {
		return err
	}
	if analyze {
		if _, err := analysisOptions(c); err != nil {
			return err
		}
	}
	return ctxWarnings(c, "ctx")
}

// checkEval checks eval's options.
func checkEval(c *cli.Context) error {
	if c.IsSet("windows") {
		if err := usage.AtLeast("windows", c.Int("windows"), 1, "windows"); err != nil {
			return err
		}
	}
	if err := evalOptions(c).Validate(); err != nil {
		return err
	}
	return ctxWarnings(c, "ctx")
}

// ctxWarnings warns of each given flag of names above the model's
// training context (the work uses the training context then).
func ctxWarnings(c *cli.Context, names ...string) error {
	args := posArgs(c)
	if len(args) == 0 {
		return nil // the action reports the missing argument
	}
	h, err := shrink.ReadHeader(args[0])
	if err != nil {
		return err
	}
	for _, name := range names {
		if w := shrink.CtxWarning(name, c.Int(name), args[0], h); w != "" && c.IsSet(name) {
			warnf("%s", w)
		}
	}
	return nil
}

// givenFlags names the command's flags given on the command line.
func givenFlags(c *cli.Context) map[string]bool {
	given := map[string]bool{}
	for _, f := range c.Command.Flags {
		if n := f.Names()[0]; c.IsSet(n) {
			given[n] = true
		}
	}
	return given
}

// calibSpec reads the calibration flags.
func calibSpec(c *cli.Context) calib.Spec {
	return calib.Spec{File: c.String("calib"), Samples: c.Int("samples"), Ctx: c.Int("ctx"), Seed: c.Uint64("seed"), Batch: c.Int("batch")}
}

// warnf prints one warning line on stderr.
func warnf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "mka-gguf: warning: %s\n", fmt.Sprintf(format, args...))
}

// modelFlag is llama.cpp's -m: the model, instead of the first argument.
var modelFlag = &cli.StringFlag{Name: "model", Aliases: []string{"m"}, Usage: "the model `FILE`, instead of the first argument (llama.cpp's -m)"}

// posArgs returns the command's file arguments, with --model (-m) first
// when given.
func posArgs(c *cli.Context) []string {
	args := c.Args().Slice()
	if m := c.String("model"); m != "" {
		args = append([]string{m}, args...)
	}
	return args
}
