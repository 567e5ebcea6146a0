// Package files is where commands write: one mechanism for every output
// (Set) and the small file helpers beside it (temporary names, atomic
// writes, JSON, SHA-256, sizes for people).
package files

// One mechanism for every path a command writes: the command declares its
// outputs up front (New, File, Dir), Begin checks them all before any
// work, the command builds each one in a temporary file beside it (Tmp), and
// Commit renames them into place only when everything succeeded. Cleanup,
// deferred right after Begin, removes every temporary and, when the command
// did not commit, the folders it created: a failed or interrupted command
// leaves none of its outputs.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
)

// Set is the set of files (and folders) one command writes.
type Set struct {
	force     bool
	inputs    []Input
	files     []*File
	dirs      []*Dir
	begun     bool
	committed bool
}

// Input is a path and what the command line calls it ("IN",
// "--calib").
type Input struct{ What, Path string }

// File is one declared output file: the command writes Tmp, Commit
// renames it to Path.
type File struct {
	Path    string // where the output appears when the command succeeds
	Tmp     string // where the command builds it
	what    string // how the command line names it: "OUT", "--report"
	existed bool   // Path existed before (overwritten with --force)
	renamed bool
}

// Dir is a declared output folder (compare --out).
type Dir struct {
	path    string
	what    string
	created bool // made by Begin, removed by Cleanup unless committed
}

// TmpTag marks the temporary files of declared outputs: ".<name>.mka-out".
const TmpTag = "mka-out"

// New starts the output set of a command. Inputs are the files the
// command reads, with their names on the command line; empty paths are
// ignored. force (--force) allows replacing existing files.
func New(force bool, inputs ...Input) *Set {
	s := &Set{force: force}
	for _, in := range inputs {
		if in.Path != "" {
			s.inputs = append(s.inputs, in)
		}
	}
	return s
}

// File declares an output file; an empty path (an output not asked for)
// gives nil.
func (s *Set) File(path, what string) *File {
	if path == "" {
		return nil
	}
	f := &File{Path: path, Tmp: TempBeside(path, TmpTag), what: what}
	s.files = append(s.files, f)
	return f
}

// Dir declares an output folder; it may exist (then only the files in it
// are outputs) or not (then Begin creates it and a failure removes it).
func (s *Set) Dir(path, what string) *Dir {
	d := &Dir{path: path, what: what}
	s.dirs = append(s.dirs, d)
	return d
}

// Begin checks every declared output, then creates the declared folders
// that do not exist yet. Checks: an output is no input and no other
// output (same absolute path or the same file), is not a folder or a
// special file, exists only with --force, and its folder exists (or is a
// declared one) and is writable.
func (s *Set) Begin() error {
	if err := s.check(); err != nil {
		return err
	}
	for _, d := range s.dirs {
		if _, err := os.Stat(d.path); errors.Is(err, os.ErrNotExist) {
			if err := os.Mkdir(d.path, 0o755); err != nil {
				s.Cleanup()
				return fmt.Errorf("%s: %s: %w", d.path, d.what, err)
			}
			d.created = true
		}
	}
	s.begun = true
	register(s)
	return nil
}

func (s *Set) check() error {
	for _, in := range s.inputs {
		if st, err := os.Stat(in.Path); err == nil && st.IsDir() {
			return fmt.Errorf("%s: %s is a directory, not a file", in.Path, in.What)
		}
	}
	declared := map[string]bool{}
	for _, d := range s.dirs {
		abs, err := filepath.Abs(d.path)
		if err != nil {
			return fmt.Errorf("%s: %s: %w", d.path, d.what, err)
		}
		declared[abs] = true
		st, err := os.Stat(d.path)
		switch {
		case err == nil && !st.IsDir():
			return fmt.Errorf("%s: %s is not a folder", d.path, d.what)
		case err == nil:
			if err := writable(d.path); err != nil {
				return fmt.Errorf("%s: %s: folder is not writable", d.path, d.what)
			}
		case errors.Is(err, os.ErrNotExist):
			if err := folderOK(filepath.Dir(abs)); err != nil {
				return fmt.Errorf("%s: %s: %w", d.path, d.what, err)
			}
		default:
			return fmt.Errorf("%s: %s: %w", d.path, d.what, err)
		}
	}
	for i, f := range s.files {
		if f.Path == "-" {
			return fmt.Errorf("%s is \"-\": mka-gguf writes files, not standard output; give a file name", f.what)
		}
		if strings.HasSuffix(f.Path, string(filepath.Separator)) {
			return fmt.Errorf("%s: %s is a folder name; give a file name", f.Path, f.what)
		}
		abs, err := filepath.Abs(f.Path)
		if err != nil {
			return fmt.Errorf("%s: %s: %w", f.Path, f.what, err)
		}
		for _, in := range s.inputs {
			if samePath(f.Path, in.Path) {
				return fmt.Errorf("%s: %s is the input file (%s); choose another file", f.Path, f.what, in.What)
			}
		}
		for _, g := range s.files[:i] {
			if samePath(f.Path, g.Path) {
				return fmt.Errorf("%s: given as both %s and %s; choose two files", f.Path, g.what, f.what)
			}
		}
		st, err := os.Lstat(f.Path)
		switch {
		case err == nil && st.IsDir():
			return fmt.Errorf("%s: %s is a folder; give a file name", f.Path, f.what)
		case err == nil && st.Mode()&os.ModeSymlink != 0:
			return fmt.Errorf("%s: %s is a symbolic link; give the file itself", f.Path, f.what)
		case err == nil && !st.Mode().IsRegular():
			return fmt.Errorf("%s: %s is not a regular file", f.Path, f.what)
		case err == nil && !s.force:
			return fmt.Errorf("%s: %s exists; use --force to overwrite it", f.Path, f.what)
		case err == nil:
			f.existed = true
		case !errors.Is(err, os.ErrNotExist):
			return fmt.Errorf("%s: %s: %w", f.Path, f.what, err)
		}
		if parent := filepath.Dir(abs); !declared[parent] {
			if err := folderOK(parent); err != nil {
				return fmt.Errorf("%s: %s: %w", f.Path, f.what, err)
			}
		}
	}
	return nil
}

// samePath reports whether a and b name the same file: the same absolute
// path, or (when both exist) os.SameFile.
func samePath(a, b string) bool {
	aa, err1 := filepath.Abs(a)
	ab, err2 := filepath.Abs(b)
	if err1 == nil && err2 == nil && aa == ab {
		return true
	}
	sa, err1 := os.Stat(a)
	sb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(sa, sb)
}

// folderOK checks that dir exists, is a folder and is writable.
func folderOK(dir string) error {
	st, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("folder %s does not exist", dir)
	}
	if !st.IsDir() {
		return fmt.Errorf("%s is not a folder", dir)
	}
	if err := writable(dir); err != nil {
		return fmt.Errorf("folder %s is not writable", dir)
	}
	return nil
}

// writable asks the kernel whether this process may create files in dir.
func writable(dir string) error {
	return syscall.Access(dir, 0x2) // W_OK
}

// CommitJSON writes v as JSON into f's temporary file (nil: no report
// asked for) and then commits every output: a command's last step.
func (s *Set) CommitJSON(ctx context.Context, f *File, v any) error {
	if err := WriteJSON(f, v); err != nil {
		return err
	}
	return s.Commit(ctx)
}

// Commit renames every temporary file to its output, in the order
// declared, unless ctx was cancelled. If a rename fails, the outputs
// renamed so far are removed again, so that none of them is left.
func (s *Set) Commit(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	for _, f := range s.files {
		if _, err := os.Stat(f.Tmp); err != nil {
			return fmt.Errorf("%s: %s was not written", f.Path, f.what)
		}
	}
	for _, f := range s.files {
		if err := os.Rename(f.Tmp, f.Path); err != nil {
			for _, g := range s.files {
				if g.renamed {
					os.Remove(g.Path)
				}
			}
			return fmt.Errorf("%s: %w", f.Path, err)
		}
		f.renamed = true
	}
	s.committed = true
	return nil
}

// Cleanup removes every temporary file and, unless the set was committed,
// the folders Begin created. It is safe to call more than once.
func (s *Set) Cleanup() {
	unregister(s)
	for _, f := range s.files {
		RemoveTemps(f)
	}
	if !s.committed {
		for i := len(s.dirs) - 1; i >= 0; i-- {
			if d := s.dirs[i]; d.created {
				os.Remove(d.path) // only when empty: never what someone else put there
				d.created = false
			}
		}
	}
}

// RemoveTemps removes f's temporary file and the temporary files that
// writers made beside it from that name (".<tmp>.mka-tmp",
// "..<tmp>.mka-tmp.tmp-*": the names "<dots><name>.mka-out*" with one to
// three leading dots).
func RemoveTemps(f *File) {
	os.Remove(f.Tmp)
	dir, name := filepath.Split(f.Path)
	for _, dots := range []string{".", "..", "..."} {
		m, _ := filepath.Glob(filepath.Join(dir, dots+name+"."+TmpTag+"*"))
		for _, p := range m {
			os.Remove(p)
		}
	}
}

// The sets of running commands, for CleanupAll on a second signal, and the
// temporary paths of every declared output, for displayPaths.
var (
	activeMu sync.Mutex
	active   = map[*Set]bool{}
	tmpNames = map[string]string{}
)

func register(s *Set) {
	activeMu.Lock()
	defer activeMu.Unlock()
	active[s] = true
	for _, f := range s.files {
		tmpNames[f.Tmp] = f.Path
	}
}

func unregister(s *Set) {
	activeMu.Lock()
	defer activeMu.Unlock()
	delete(active, s)
}

// CleanupAll removes the temporaries of every running command; main calls
// it before exiting at once on a second signal.
func CleanupAll() {
	activeMu.Lock()
	sets := make([]*Set, 0, len(active))
	for s := range active {
		sets = append(sets, s)
	}
	activeMu.Unlock()
	for _, s := range sets {
		s.Cleanup()
	}
}

// Alias makes DisplayPaths show path for tmp, a temporary file of the
// work that is no declared output (e.g. the merged model a quantization
// starts from).
func Alias(tmp, path string) {
	activeMu.Lock()
	defer activeMu.Unlock()
	tmpNames[tmp] = displayPathsLocked(path)
}

// DisplayPaths replaces the temporary paths of declared outputs (and
// Alias's) in msg by the outputs' own paths, so that an error names the
// file the user gave.
func DisplayPaths(msg string) string {
	activeMu.Lock()
	defer activeMu.Unlock()
	return displayPathsLocked(msg)
}

// displayPathsLocked is DisplayPaths with activeMu held: the longest
// temporary names first, so that one that contains another is replaced
// whole.
func displayPathsLocked(msg string) string {
	tmps := make([]string, 0, len(tmpNames))
	for tmp := range tmpNames {
		tmps = append(tmps, tmp)
	}
	slices.SortFunc(tmps, func(a, b string) int { return len(b) - len(a) })
	for _, tmp := range tmps {
		msg = strings.ReplaceAll(msg, tmp, tmpNames[tmp])
	}
	return msg
}
