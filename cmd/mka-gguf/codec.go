package main

import (
	"encoding/json"

	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/ggmlcodec"
	"github.com/mka-gguf/mka-gguf/merge/edit"
)

// codecFor returns the codec of rewrites and in-memory edits.
func codecFor() edit.Codec { return ggmlcodec.Codec{} }

// writeJSON writes v as indented JSON to path, atomically.
func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(path, append(b, '\n'))
}
