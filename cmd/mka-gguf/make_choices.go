package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/choice"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/files"
)

func init() {
	commands = append(commands, &cli.Command{
		Name:  "make-choices",
		Usage: "build a story-cloze multiple-choice test (JSONL for eval --choices) from held-out text",
		Description: "Every paragraph of TEXT (paragraphs are separated by blank lines) with at least three sentences gives one task:\n" +
			"its first 2–5 sentences are the context, the next sentence is the right ending, and --distractors sentences\n" +
			"drawn from paragraphs more than 5 away, each half to twice the right ending's length, are the wrong ones;\n" +
			"the right ending's place is random. --seed makes it reproducible. Build it from text no model was trained or\n" +
			"calibrated on.",
		ArgsUsage: "TEXT",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Required: true, Usage: "JSONL file to write"},
			&cli.Uint64Flag{Name: "seed", Value: 1, Usage: "random seed"},
			&cli.IntFlag{Name: "tasks", Usage: "at most this many tasks (default: one per usable paragraph)"},
			&cli.IntFlag{Name: "distractors", Value: 3, Usage: "wrong endings per task"},
			&cli.BoolFlag{Name: "force", Usage: "overwrite the output if it exists"},
		},
		Action: runMakeChoices,
	})
}

func runMakeChoices(c *cli.Context) error {
	if c.NArg() != 1 {
		return usageError(c, "want one TEXT file, got %s", argumentCount(c.NArg()))
	}
	if c.Int("distractors") < 1 || c.Int("tasks") < 0 {
		return usageError(c, "--distractors must be at least 1 and --tasks not negative")
	}
	in, out := c.Args().First(), c.String("out")
	if _, err := os.Stat(out); err == nil && !c.Bool("force") {
		return fmt.Errorf("%s: output exists; use --force to overwrite it", out)
	}
	text, err := os.ReadFile(in)
	if err != nil {
		return fmt.Errorf("read text: %w", err)
	}
	tasks, err := choice.BuildCloze(string(text), choice.ClozeOptions{Seed: c.Uint64("seed"), Distractors: c.Int("distractors"), MaxTasks: c.Int("tasks")})
	if err != nil {
		return fmt.Errorf("%s: %w", in, err)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	for _, t := range tasks {
		if err := enc.Encode(t); err != nil {
			return err
		}
	}
	if err := files.WriteAtomic(out, buf.Bytes()); err != nil {
		return err
	}
	fmt.Printf("wrote %s: %d story-cloze tasks of %d endings from %s\n", out, len(tasks), c.Int("distractors")+1, in)
	return nil
}
