package main

import (
	"fmt"
	"path/filepath"
	"runtime"
	"sort"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/mka-gguf/mka-gguf/cgo"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/files"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/report"
	"github.com/mka-gguf/mka-gguf/simd"
)

func init() {
	commands = append(commands, &cli.Command{
		Name:  "env",
		Usage: "show the CPU's features, the ggml CPU variant chosen and why, the devices and the Go kernels",
		Description: `A portable build ships ggml's CPU backend in several variants
(libggml-cpu-<variant>.so beside the binary) and loads the best one the
CPU supports; --cpu-variant (or MKA_CPU_VARIANT) forces one, "builtin"
forces the baseline code compiled into the binary.`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "print JSON on stdout"},
			jsonFileFlag(),
			forceFlag(),
			&cli.BoolFlag{Name: "ggml-scores", Usage: "also ask every shipped variant for ggml's own score (opens each library: only on CPUs that can load them all)"},
		},
		Action: runEnv,
	})
}

// envReport is what env prints.
type envReport struct {
	report.Head
	Go         string        `json:"go"`
	Platform   string        `json:"platform"`
	CPU        string        `json:"cpu"`
	CPUFlags   []string      `json:"cpu_flags"` // the ggml feature names this CPU has
	Threads    int           `json:"threads"`
	GoKernels  string        `json:"go_kernels"`
	Backends   *backendSetup `json:"backends"`
	Devices    []envDevice   `json:"devices"`
	SystemInfo string        `json:"system_info"`
	// GGMLScores is each shipped variant's own ggml_backend_score (0: the
	// CPU cannot run it), with --ggml-scores.
	GGMLScores map[string]int `json:"ggml_scores,omitempty"`
}

func runEnv(c *cli.Context) error {
	outs := files.New(c.Bool("force"))
	jsonF := outs.File(c.String("json-file"), typedName(c, "json-file"))
	if err := outs.Begin(); err != nil {
		return err
	}
	defer outs.Cleanup()
	b := backends
	r := envReport{
		Head:       head("env"),
		Go:         runtime.Version(),
		Platform:   runtime.GOOS + "/" + runtime.GOARCH,
		CPU:        simd.Describe(),
		CPUFlags:   simd.GGMLFeatures(),
		Threads:    defaultThreads(),
		GoKernels:  simd.Kernels(),
		Backends:   b,
		Devices:    envDevices(cgo.Devices()),
		SystemInfo: cgo.SystemInfo(),
	}
	if c.Bool("ggml-scores") {
		r.GGMLScores = map[string]int{}
		for _, v := range b.Shipped {
			lib := filepath.Join(b.Dir, "libggml-cpu-"+v+".so")
			score, err := cgo.BackendScore(lib)
			if err != nil {
				return err
			}
			r.GGMLScores[v] = score
		}
	}
	if err := outs.CommitJSON(c.Context, jsonF, r); err != nil {
		return err
	}
	if c.Bool("json") {
		return printJSON(r)
	}
	fmt.Printf("mka-gguf      %s (%s, %s)\n", r.Version, r.Go, r.Platform)
	fmt.Printf("cpu           %s\n", r.CPU)
	fmt.Printf("ggml flags    %s\n", strings.Join(r.CPUFlags, " "))
	fmt.Printf("threads       %d (default for --threads)\n", r.Threads)
	fmt.Printf("go kernels    %s\n", r.GoKernels)
	fmt.Printf("cpu variant   %s (%s)\n", b.CPU, b.Reason)
	if b.Dir != "" {
		fmt.Printf("backend dir   %s\n", b.Dir)
	}
	if len(b.Shipped) > 0 {
		fmt.Printf("shipped       %s\n", strings.Join(b.Shipped, " "))
	}
	names := make([]string, 0, len(b.Skipped))
	for n := range b.Skipped {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Printf("  not %-12s %s\n", n, b.Skipped[n])
	}
	for _, e := range b.GPUErrors {
		fmt.Printf("gpu error     %s\n", e)
	}
	for _, d := range r.Devices {
		mem := ""
		if d.TotalBytes > 0 {
			mem = fmt.Sprintf(", %.1f/%.1f GiB free", float64(d.FreeBytes)/(1<<30), float64(d.TotalBytes)/(1<<30))
		}
		fmt.Printf("device        %s [%s, %s backend%s] %s\n", d.Name, d.Type, d.Backend, mem, d.Description)
	}
	fmt.Printf("ggml          %s\n", r.SystemInfo)
	for _, v := range b.Shipped {
		if s, ok := r.GGMLScores[v]; ok {
			fmt.Printf("ggml score    %-12s %d\n", v, s)
		}
	}
	return nil
}

// envDevice is a cgo.Device with snake_case JSON names.
type envDevice struct {
	Name        string   `json:"name"`
	Description string   `json:"description"`
	Type        string   `json:"type"`
	Backend     string   `json:"backend"`
	FreeBytes   uint64   `json:"free_bytes"`
	TotalBytes  uint64   `json:"total_bytes"`
	Features    []string `json:"features"`
}

func envDevices(ds []cgo.Device) []envDevice {
	out := make([]envDevice, len(ds))
	for i, d := range ds {
		out[i] = envDevice(d)
	}
	return out
}
