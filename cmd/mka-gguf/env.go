package main

import (
	"fmt"
	"runtime"

	"github.com/urfave/cli/v2"

	"github.com/mka-gguf/mka-gguf/cgo"
	"github.com/mka-gguf/mka-gguf/simd"
)

func init() {
	commands = append(commands, &cli.Command{
		Name:   "env",
		Usage:  "show the detected CPU features, the kernels in use and how ggml was compiled",
		Action: runEnv,
	})
}

func runEnv(c *cli.Context) error {
	fmt.Printf("mka-gguf      %s (%s, %s/%s)\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	fmt.Printf("cpu           %s\n", simd.Describe())
	fmt.Printf("go kernels    %s\n", simd.Kernels())
	fmt.Printf("threads       %d (default for --threads)\n", defaultThreads())
	fmt.Printf("ggml          %s\n", cgo.SystemInfo())
	return nil
}
