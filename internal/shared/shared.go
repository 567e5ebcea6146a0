// Package shared locates the project's shared test data (real GGUF models and
// TinyStories text) that lives beside the repository in ../shared.
//
// Tests that need it call Path. When the data is missing the test is skipped
// on a developer machine, but fails under CI=true, so a CI run can never pass
// by silently skipping the tests that matter.
package shared

import (
	"os"
	"path/filepath"
	"testing"
)

// Dir returns the shared data folder: $MKA_SHARED if set, else ../shared
// beside the repository root (the folder holding go.mod). It returns "" when
// no such folder exists.
func Dir() string {
	if d := os.Getenv("MKA_SHARED"); d != "" {
		return d
	}
	wd, err := os.Getwd()
	if err != nil {
		return ""
	}
	for d := wd; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			s := filepath.Join(filepath.Dir(d), "shared")
			if fi, err := os.Stat(s); err == nil && fi.IsDir() {
				return s
			}
			return ""
		}
		if filepath.Dir(d) == d {
			return ""
		}
	}
}

// Path returns the absolute path of rel inside the shared data folder, e.g.
// Path(t, "models/stories260K.gguf"). If the file is missing the test fails
// when the environment variable CI is "true" and is skipped otherwise.
func Path(tb testing.TB, rel string) string {
	tb.Helper()
	d := Dir()
	p := filepath.Join(d, rel)
	if d != "" {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		tb.Fatalf("shared test data %s is missing (CI=true): expected ../shared beside the repository or $MKA_SHARED", rel)
	}
	tb.Skipf("shared test data %s not found; skipping", rel)
	return ""
}

// Model returns the path of a model in ../shared/models (see Path).
func Model(tb testing.TB, name string) string {
	tb.Helper()
	return Path(tb, filepath.Join("models", name))
}

// Models returns the paths of every *.gguf file in ../shared/models, failing
// or skipping as Path does when there are none.
func Models(tb testing.TB) []string {
	tb.Helper()
	dir := Path(tb, "models")
	m, _ := filepath.Glob(filepath.Join(dir, "*.gguf"))
	if len(m) == 0 {
		if os.Getenv("CI") == "true" {
			tb.Fatalf("no models in %s (CI=true)", dir)
		}
		tb.Skipf("no models in %s", dir)
	}
	return m
}
