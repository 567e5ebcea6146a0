package main

import (
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
	// Skip global flags to find the command.
	i := 1
	for i < len(args) && strings.HasPrefix(args[i], "-") {
		i++
	}
	if i >= len(args) {
		return args
	}
	cmd := app.Command(args[i])
	if cmd == nil {
		return args
	}
	takesValue := map[string]bool{}
	for _, f := range cmd.Flags {
		_, isBool := f.(*cli.BoolFlag)
		for _, n := range f.Names() {
			takesValue[n] = !isBool
		}
	}
	global := map[string]bool{}
	for _, f := range app.Flags {
		for _, n := range f.Names() {
			global[n] = true
		}
	}
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
		if global[name] && takesValue[name] == false {
			if _, own := takesValue[name]; !own {
				globals = append(globals, a) // e.g. -q after the command
				continue
			}
		}
		flags = append(flags, a)
		if !strings.Contains(name, "=") && takesValue[name] && j+1 < len(rest) {
			flags = append(flags, rest[j+1])
			j++
		}
	}
	out := append([]string{}, args[:i]...)
	out = append(out, globals...)
	out = append(out, args[i])
	out = append(out, flags...)
	return append(out, pos...)
}
