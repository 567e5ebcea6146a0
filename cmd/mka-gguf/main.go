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
	"sync"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/mka-gguf/mka-gguf/cgo"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/cpuload"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/files"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/progress"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/shrink"
	"github.com/mka-gguf/mka-gguf/simd"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

func main() {
	ctx, cancel := context.WithCancel(context.Background())
	sig := watchSignals(cancel)
	app := newApp()
	err := unknownCommand(app, os.Args)
	if err == nil {
		err = missingValue(app, os.Args)
	}
	if err == nil {
		err = app.RunContext(ctx, interspersed(app, os.Args))
	}
	if s := sig.first(); s != nil && err != nil {
		// Whatever the error says, it comes from the cancellation.
		fmt.Fprintln(os.Stderr, "mka-gguf: interrupted")
		os.Exit(exitCode(s))
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "mka-gguf: %s\n", files.DisplayPaths(oneLine(err)))
		var gate *shrink.GateError
		if errors.As(err, &gate) {
			os.Exit(3) // the quality gate (merge --max-kld)
		}
		os.Exit(1)
	}
}

// signalState records the first SIGINT/SIGTERM.
type signalState struct {
	mu sync.Mutex
	s  os.Signal
}

func (st *signalState) first() os.Signal {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.s
}

// watchSignals makes the first Ctrl-C or SIGTERM cancel the command's
// context (the command stops, removes its temporary files and main exits
// with 130 or 143 and "interrupted"); a second one removes the
// temporaries of the declared outputs and exits at once.
func watchSignals(cancel context.CancelFunc) *signalState {
	st := &signalState{}
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	go func() {
		s := <-ch
		st.mu.Lock()
		st.s = s
		st.mu.Unlock()
		cancel()
		s = <-ch
		files.CleanupAll()
		fmt.Fprintln(os.Stderr, "mka-gguf: interrupted")
		os.Exit(exitCode(s))
	}()
	return st
}

// exitCode is the shell's status for a process ended by s: 128 + its
// number (130 for SIGINT, 143 for SIGTERM).
func exitCode(s os.Signal) int {
	if n, ok := s.(syscall.Signal); ok {
		return 128 + int(n)
	}
	return 1
}

// oneLine folds an error message onto one line.
func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}

func newApp() *cli.App {
	for _, c := range commands {
		c.OnUsageError = usageErr
		c.Before = validateFlags
		action := c.Action
		c.Action = func(c *cli.Context) error { return usageFor(c, action(c)) }
		markRequired(c.Flags)
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
			&cli.IntFlag{Name: "gpu-layers", Aliases: []string{"ngl", "n-gpu-layers"}, Value: -1,
				Usage: "layers to offload to the GPU (-1: all when a GPU backend is present, 0: CPU only)"},
			&cli.BoolFlag{Name: "adapt-threads", Value: true,
				Usage: "use fewer CPU threads while other processes keep the cores busy (ggml's threads spin while they wait for each other)"},
			&cli.BoolFlag{Name: "no-mmap",
				Usage: "read models into memory instead of mapping them (a merge then holds the whole model in RAM)"},
		},
		Before: func(c *cli.Context) error {
			progress.Quiet = c.Bool("quiet")
			if n := c.Int("gpu-layers"); n < -1 {
				return fmt.Errorf("--gpu-layers %d is out of range: want -1 (all when a GPU is present), 0 (CPU only) or more (see mka-gguf --help)", n)
			}
			cgo.Init()
			if c.Bool("verbose") {
				cgo.SetLogLevel(cgo.LogInfo)
			}
			gpuLayers = c.Int("gpu-layers")
			noMmap = c.Bool("no-mmap")
			if c.Bool("adapt-threads") {
				cgo.SetThreadLimit(cpuload.Start(250 * time.Millisecond).Limit)
			}
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
	cmd := ""
	if c.Command != nil && c.Command.Name != "" && c.Command.Name != c.App.Name {
		cmd = c.Command.Name
	}
	if msg, ok := unknownFlag(cmd, err); ok {
		err = errors.New(msg)
	}
	if cmd != "" {
		return fmt.Errorf("%s: %w (see mka-gguf %s --help)", cmd, err, cmd)
	}
	return fmt.Errorf("%w (see mka-gguf --help)", err)
}

// commands is filled by the init functions of the command files.
var commands []*cli.Command

// newThreadsFlag returns a command's --threads flag (llama.cpp's -t).
func newThreadsFlag() cli.Flag {
	return &cli.IntFlag{Name: "threads", Aliases: []string{"t"}, Usage: "CPU threads, at most the CPUs this process may use", DefaultText: "physical cores"}
}

// markRequired appends "(required)" to the help of required flags.
func markRequired(flags []cli.Flag) {
	for _, f := range flags {
		if sf, ok := f.(*cli.StringFlag); ok && sf.Required && !strings.HasSuffix(sf.Usage, "(required)") {
			sf.Usage += " (required)"
		}
	}
}

// unknownCommand refuses a command (or "help COMMAND") that does not
// exist, listing the commands.
func unknownCommand(app *cli.App, args []string) error {
	i := commandIndex(app, args)
	if i < 0 {
		return nil
	}
	name := args[i]
	if (name == "help" || name == "h") && i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") {
		name = args[i+1]
	} else if name == "help" || name == "h" {
		return nil
	}
	if app.Command(name) != nil {
		return nil
	}
	var names []string
	for _, c := range app.Commands {
		if !c.Hidden {
			names = append(names, c.Name)
		}
	}
	return fmt.Errorf("unknown command %q; the commands are %s (see mka-gguf --help)", name, strings.Join(names, ", "))
}

// argumentCount says how many command-line arguments there were, for usage
// errors: "no arguments", "1 argument", "3 arguments".
func argumentCount(n int) string {
	switch n {
	case 0:
		return "no arguments"
	case 1:
		return "1 argument"
	}
	return fmt.Sprintf("%d arguments", n)
}

// usageError reports a wrong command line.
func usageError(c *cli.Context, format string, args ...any) error {
	return fmt.Errorf("%s: %s (see mka-gguf %s --help)", c.Command.Name, fmt.Sprintf(format, args...), c.Command.Name)
}
