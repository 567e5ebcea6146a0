package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/choice"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/corpus"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/files"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/report"
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
			&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Required: true, Usage: "JSONL `FILE` of the tasks to write"},
			&cli.Uint64Flag{Name: "seed", Value: 1, Usage: "random seed"},
			&cli.IntFlag{Name: "tasks", Usage: "at most this many tasks", DefaultText: "one per usable paragraph"},
			&cli.IntFlag{Name: "distractors", Value: 3, Usage: "wrong endings per task"},
			forceFlag(),
			jsonFlag(),
			jsonFileFlag(),
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
	outs := files.New(c.Bool("force"), files.Input{What: "TEXT", Path: in})
	outF := outs.File(out, typedName(c, "out"))
	jsonF := outs.File(c.String("json-file"), typedName(c, "json-file"))
	if err := outs.Begin(); err != nil {
		return err
	}
	defer outs.Cleanup()
	text, err := corpus.ReadText(in)
	if err != nil {
		return err
	}
	tasks, err := choice.BuildCloze(text, choice.ClozeOptions{Seed: c.Uint64("seed"), Distractors: c.Int("distractors"), MaxTasks: c.Int("tasks")})
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
	if err := os.WriteFile(outF.Tmp, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("%s: %w", out, err)
	}
	inSum, err := files.SHA256(in)
	if err != nil {
		return err
	}
	outSum, err := files.SHA256(outF.Tmp)
	if err != nil {
		return err
	}
	res := makeChoicesResult{Head: head("make-choices"), In: report.In{Input: in, InputSHA256: inSum}, Out: report.Out{Output: out, OutputSHA256: outSum},
		Tasks: len(tasks), Endings: c.Int("distractors") + 1, Seed: c.Uint64("seed")}
	if err := outs.CommitJSON(c.Context, jsonF, res); err != nil {
		return err
	}
	fmt.Fprintf(textOut(c), "wrote %s: %d story-cloze tasks of %d endings from %s\n", out, len(tasks), res.Endings, in)
	return printJSONIf(c, res)
}

// makeChoicesResult is what make-choices prints with --json (docs/json.md).
type makeChoicesResult struct {
	report.Head
	report.In
	report.Out
	Tasks   int    `json:"tasks"`
	Endings int    `json:"endings"` // per task
	Seed    uint64 `json:"seed"`
}
