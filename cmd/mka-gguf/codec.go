package main

import (
	"encoding/json"

	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/pipeline"
	"github.com/mka-gguf/mka-gguf/merge"
)

// codecFor returns the codec of rewrites and in-memory edits.
func codecFor() merge.Codec { return pipeline.Codec{} }

// writeJSON writes v as indented JSON to path, atomically.
func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(path, append(b, '\n'))
}
