package main

import (
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"
)

// interspersed moves a command's flags in front of its positional
// arguments, so that "mka-gguf eval model.gguf --ctx 256" works like
// llama.cpp's tools (urfave/cli v2 stops parsing flags at the first
// positional argument). Everything after "--" stays as it is.
func interspersed(app *cli.App, args []string) []string {
	if len(args) < 2 {
		return args
	}
	globalTakesValue := flagArity(app.Flags)
	i := commandIndex(app, args)
	if i < 0 {
		return args
	}
	cmd := app.Command(args[i])
	if cmd == nil {
		return args
	}
	takesValue := flagArity(cmd.Flags)
	var globals, flags, pos []string
	rest := args[i+1:]
	for j := 0; j < len(rest); j++ {
		a := rest[j]
		if a == "--" {
			pos = append(pos, rest[j:]...)
			break
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			pos = append(pos, a)
			continue
		}
		name := strings.TrimLeft(a, "-")
		base, _, hasValue := strings.Cut(name, "=")
		dst, arity := &flags, takesValue
		if _, own := takesValue[base]; !own {
			if _, ok := globalTakesValue[base]; ok {
				dst, arity = &globals, globalTakesValue // e.g. -q after the command
			}
		}
		*dst = append(*dst, a)
		if !hasValue && arity[base] && j+1 < len(rest) {
			*dst = append(*dst, rest[j+1])
			j++
		}
	}
	out := append([]string{}, args[:i]...)
	out = append(out, globals...)
	out = append(out, args[i])
	out = append(out, flags...)
	return append(out, pos...)
}

// commandIndex returns the index in args of the command name, after the
// global flags and their values, or -1 when there is none.
func commandIndex(app *cli.App, args []string) int {
	globalTakesValue := flagArity(app.Flags)
	i := 1
	for i < len(args) && strings.HasPrefix(args[i], "-") && args[i] != "-" {
		name := strings.TrimLeft(args[i], "-")
		if globalTakesValue[name] && !strings.Contains(name, "=") {
			i++
		}
		i++
	}
	if i >= len(args) {
		return -1
	}
	return i
}

// flagArity maps every name of flags to whether the flag takes a value.
func flagArity(flags []cli.Flag) map[string]bool {
	m := map[string]bool{}
	for _, f := range flags {
		_, isBool := f.(*cli.BoolFlag)
		for _, n := range f.Names() {
			m[n] = !isBool
		}
	}
	return m
}

// missingValue reports a command's flag that takes a value but is the last
// argument: interspersed would otherwise hand it the file argument before
// it as its value.
func missingValue(app *cli.App, args []string) error {
	i := commandIndex(app, args)
	if i < 0 || i == len(args)-1 {
		return nil
	}
	cmd := app.Command(args[i])
	if cmd == nil {
		return nil
	}
	last := args[len(args)-1]
	if !strings.HasPrefix(last, "-") || strings.Contains(last, "=") || slices.Contains(args[i+1:len(args)-1], "--") {
		return nil
	}
	if name := strings.TrimLeft(last, "-"); flagArity(cmd.Flags)[name] {
		return fmt.Errorf("%s: flag needs an argument: %s (see mka-gguf %s --help)", cmd.Name, last, cmd.Name)
	}
	return nil
}

// typedName returns the flag called name as the user typed it: "--report"
// when its alias --report was given, "-f" for -f; "--name" when it was not
// typed. Messages name the flag the user wrote.
func typedName(c *cli.Context, name string) string {
	var names []string
	for _, f := range c.Command.Flags {
		if slices.Contains(f.Names(), name) {
			names = f.Names()
		}
	}
	for _, a := range os.Args[1:] {
		if a == "--" {
			break
		}
		n, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if strings.HasPrefix(a, "-") && slices.Contains(names, n) {
			return dashed(n)
		}
	}
	return "--" + name
}

// dashed is a flag name as written: "-f", "--calib".
func dashed(n string) string {
	if len(n) == 1 {
		return "-" + n
	}
	return "--" + n
}

// unknownFlag rewrites the flag package's "flag provided but not defined:
// -ctx-size" as the user typed it ("unknown flag --ctx-size"), with a hint
// where another flag does what was meant.
func unknownFlag(cmd string, err error) (string, bool) {
	n, ok := strings.CutPrefix(err.Error(), "flag provided but not defined: -")
	if !ok {
		return "", false
	}
	typed := dashed(n)
	for _, a := range os.Args[1:] {
		if strings.TrimLeft(a, "-") == n || strings.HasPrefix(strings.TrimLeft(a, "-"), n+"=") {
			typed, _, _ = strings.Cut(a, "=")
			break
		}
	}
	msg := "unknown flag " + typed
	if n == "o" && (cmd == "eval" || cmd == "analyze" || cmd == "inspect" || cmd == "env" || cmd == "bench") {
		msg += fmt.Sprintf(": %s prints its results; write them as JSON with --json-file FILE", cmd)
	}
	return msg, true
}
