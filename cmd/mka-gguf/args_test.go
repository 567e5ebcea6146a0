package main

import (
	"slices"
	"strings"
	"testing"
)

func TestInterspersed(t *testing.T) {
	app := newApp()
	cases := []struct{ in, want string }{
		{"eval m.gguf --ctx 256", "eval --ctx 256 m.gguf"},
		{"-q eval m.gguf --json", "-q eval --json m.gguf"},
		{"eval m.gguf -q --ctx=64", "-q eval --ctx=64 m.gguf"},
		{"--cpu-variant builtin eval m.gguf --text t.txt", "--cpu-variant builtin eval --text t.txt m.gguf"},
		{"eval m.gguf --cpu-variant haswell --text t.txt", "--cpu-variant haswell eval --text t.txt m.gguf"},
		{"-ngl 0 eval m.gguf --gpu-layers=3", "-ngl 0 --gpu-layers=3 eval m.gguf"},
		{"eval m.gguf -- --ctx", "eval m.gguf -- --ctx"},
		{"--cpu-variant auto", "--cpu-variant auto"},
		{"nosuchcommand a --b", "nosuchcommand a --b"},
	}
	for _, c := range cases {
		got := interspersed(app, append([]string{"mka-gguf"}, strings.Fields(c.in)...))[1:]
		if !slices.Equal(got, strings.Fields(c.want)) {
			t.Errorf("%q -> %q, want %q", c.in, strings.Join(got, " "), c.want)
		}
	}
}
