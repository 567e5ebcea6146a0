// Command mka-gguf shrinks GGUF language models by merging similar decoder
// blocks (MKA: manifold alignment + normalised information similarity) and
// writes merged, optionally quantized GGUF files that stock llama.cpp loads.
//
// Run "mka-gguf help" for the commands.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/mka-gguf/mka-gguf/cgo"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/progress"
	"github.com/mka-gguf/mka-gguf/simd"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	app := newApp()
	err := app.RunContext(ctx, interspersed(app, os.Args))
	if err != nil {
		if errors.Is(err, context.Canceled) {
			err = errors.New("interrupted")
		}
		fmt.Fprintf(os.Stderr, "mka-gguf: %s\n", oneLine(err))
		stop()
		os.Exit(1)
	}
}

// oneLine folds an error message onto one line.
func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}

func newApp() *cli.App {
	for _, c := range commands {
		c.OnUsageError = usageErr
	}
	return &cli.App{
		Name:                 "mka-gguf",
		Usage:                "shrink GGUF models by merging similar decoder blocks (MKA)",
		Version:              version,
		EnableBashCompletion: true,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "no progress output on stderr"},
			&cli.BoolFlag{Name: "verbose", Usage: "show llama.cpp's log"},
			&cli.StringFlag{Name: "cpu-variant", EnvVars: []string{simd.CPUVariantEnv}, Value: "auto",
				Usage: "ggml CPU code of a portable build: auto, builtin or a variant name (see mka-gguf env)"},
			&cli.IntFlag{Name: "gpu-layers", Aliases: []string{"ngl"}, Value: -1,
				Usage: "layers to offload to the GPU (-1: all when a GPU backend is present, 0: CPU only)"},
		},
		Before: func(c *cli.Context) error {
			progress.Quiet = c.Bool("quiet")
			cgo.Init()
			if c.Bool("verbose") {
				cgo.SetLogLevel(cgo.LogInfo)
			}
			gpuLayers = c.Int("gpu-layers")
			var err error
			if backends, err = setupBackends(c.String("cpu-variant")); err != nil {
				return err
			}
			for _, e := range backends.GPUErrors {
				progress.Printf("mka-gguf: warning: %s (running on the CPU)\n", e)
			}
			return nil
		},
		Commands:     commands,
		OnUsageError: usageErr,
		ExitErrHandler: func(*cli.Context, error) {
			// main prints the error and exits; urfave/cli must not.
		},
	}
}

// usageErr turns a flag parsing error into one line instead of the help
// text.
func usageErr(c *cli.Context, err error, _ bool) error {
	if c.Command != nil && c.Command.Name != "" && c.Command.Name != c.App.Name {
		return fmt.Errorf("%s: %w (see mka-gguf %s --help)", c.Command.Name, err, c.Command.Name)
	}
	return fmt.Errorf("%w (see mka-gguf --help)", err)
}

// commands is filled by the init functions of the command files.
var commands []*cli.Command

// threadsFlag is the common --threads flag.
var threadsFlag = &cli.IntFlag{Name: "threads", Aliases: []string{"t"}, Usage: "CPU threads (default: physical cores)"}

// usageError reports a wrong command line.
func usageError(c *cli.Context, format string, args ...any) error {
	return fmt.Errorf("%s: %s (see mka-gguf %s --help)", c.Command.Name, fmt.Sprintf(format, args...), c.Command.Name)
}
