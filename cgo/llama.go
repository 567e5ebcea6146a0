package cgo

/*
#cgo CXXFLAGS: -std=c++17
#include <stdlib.h>
#include <string.h>
#include "llama.h"
#include "ggml.h"
#include "ggml-backend.h"
#include "safe.h"

extern void mkaGoLog(int level, char *text);

static void mka_log(enum ggml_log_level level, const char *text, void *ud) {
	(void)ud;
	mkaGoLog((int)level, (char *)text);
}

static void mka_log_install(void) {
	llama_log_set(mka_log, NULL);
	ggml_log_set(mka_log, NULL);
}

#ifdef __GLIBC__
#include <malloc.h>
static void mka_trim(void) { malloc_trim(0); }
#else
static void mka_trim(void) {}
#endif

static llama_token mka_batch_get_token(struct llama_batch *b, int i) { return b->token[i]; }

static void mka_batch_set(struct llama_batch *b, int i, llama_token tok, llama_pos pos, llama_seq_id seq, int8_t out) {
	b->token[i] = tok;
	b->pos[i] = pos;
	b->n_seq_id[i] = 1;
	b->seq_id[i][0] = seq;
	b->logits[i] = out;
}
*/
import "C"

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"
	"unsafe"

	// The C sources of ggml (base + CPU backend) and llama.cpp core.
	_ "github.com/ollama/ollama/llama/llama.cpp/src"
	_ "github.com/ollama/ollama/ml/backend/ggml/ggml/src"
)

// Errors returned at the C boundary.
var (
	// ErrLoad means llama.cpp could not load a model file.
	ErrLoad = errors.New("llama.cpp could not load the model")
	// ErrContext means llama.cpp could not create a context.
	ErrContext = errors.New("llama.cpp could not create a context")
	// ErrDecode means llama_decode failed.
	ErrDecode = errors.New("llama_decode failed")
	// ErrClosed means a method was called on a closed Model or Context.
	ErrClosed = errors.New("cgo: use of closed handle")
)

// LogLevel selects which llama.cpp/ggml log lines reach stderr.
type LogLevel int

// Log levels, in ggml's order.
const (
	LogDebug LogLevel = 1
	LogInfo  LogLevel = 2
	LogWarn  LogLevel = 3
	LogError LogLevel = 4
	LogNone  LogLevel = 5
)

var logLevel atomic.Int32

// lastErrors keeps llama.cpp's most recent error lines, so that a failed
// call can say why in its own one-line error instead of llama.cpp printing
// several lines on stderr.
var lastErrors struct {
	sync.Mutex
	lines []string
}

//export mkaGoLog
func mkaGoLog(level C.int, text *C.char) {
	// GGML_LOG_LEVEL_CONT (5) continues the previous line; it is printed
	// only when the level threshold lets everything through.
	l := LogLevel(level)
	if l == 5 || l == 0 {
		l = LogDebug
	}
	msg := C.GoString(text)
	dropRegisteredPages(msg)
	if l == LogError {
		if m := strings.TrimSpace(msg); m != "" {
			lastErrors.Lock()
			lastErrors.lines = append(lastErrors.lines, m)
			if len(lastErrors.lines) > 4 {
				lastErrors.lines = lastErrors.lines[1:]
			}
			lastErrors.Unlock()
		}
	}
	if int32(l) >= logLevel.Load() {
		fmt.Fprint(os.Stderr, msg)
	}
}

// clearErrors forgets the recorded llama.cpp error lines.
func clearErrors() {
	lastErrors.Lock()
	lastErrors.lines = nil
	lastErrors.Unlock()
}

// llamaReason returns llama.cpp's recorded error lines as one line, or a
// hint to run with --verbose when there are none.
func llamaReason() string {
	lastErrors.Lock()
	defer lastErrors.Unlock()
	if len(lastErrors.lines) == 0 {
		return "run with --verbose for llama.cpp's log"
	}
	return "llama.cpp: " + strings.Join(strings.Fields(strings.Join(lastErrors.lines, "; ")), " ")
}

// SetLogLevel sets the lowest llama.cpp/ggml log level printed on stderr.
// The default is LogNone (errors are folded into the returned Go errors),
// or LogInfo when MKA_VERBOSE is set.
func SetLogLevel(l LogLevel) { logLevel.Store(int32(l)) }

var initOnce sync.Once

// Init initialises the llama.cpp backend once per process and routes its
// log output through SetLogLevel. Every other function calls it, so calling
// it explicitly is optional.
func Init() {
	initOnce.Do(func() {
		if os.Getenv("MKA_VERBOSE") != "" {
			logLevel.Store(int32(LogInfo))
		} else {
			logLevel.Store(int32(LogNone))
		}
		fixMalloc()
		C.mka_log_install()
		C.llama_backend_init()
	})
}

// SystemInfo returns llama.cpp's description of the compiled CPU features,
// e.g. "CPU : SSE3 = 1 | AVX2 = 1 | AVX512 = 1 | ...".
func SystemInfo() string {
	Init()
	return strings.TrimSpace(C.GoString(C.llama_print_system_info()))
}

// ModelParams configures LoadModel.
type ModelParams struct {
	// GPULayers is the number of layers to offload to a GPU, when the build
	// has a GPU backend; 0 keeps everything on the CPU.
	GPULayers int
	// NoMmap reads the file into memory (anonymous, private) instead of
	// mapping it read-only. Weight.Set works either way; mapped, only the
	// weights it edits take private memory and the rest stays in the
	// page cache, which the kernel can evict.
	NoMmap bool
	// VocabOnly loads only the vocabulary, not the weights.
	VocabOnly bool
}

// Model is a loaded llama.cpp model. It is safe for concurrent reads
// (tokenization) but Close must not race with other calls.
type Model struct {
	p     *C.struct_llama_model
	vocab *C.struct_llama_vocab
	path  string
	// private holds the weights of the file's mapping that Weight.Set gave
	// buffers of their own, privateBytes their size.
	private      map[*C.struct_ggml_tensor]*privateWeight
	privateBytes int
}

// LoadModel loads the GGUF model at path (memory-mapped by default).
func LoadModel(path string, mp ModelParams) (*Model, error) {
	Init()
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("load model: %w", err)
	}
	p := C.llama_model_default_params()
	p.n_gpu_layers = C.int32_t(mp.GPULayers)
	p.use_mmap = C.bool(!mp.NoMmap)
	p.vocab_only = C.bool(mp.VocabOnly)
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	clearErrors()
	var exc C.mka_exc
	m := C.mka_model_load(cpath, p, &exc)
	if err := caught("llama_model_load_from_file", &exc); err != nil {
		return nil, fmt.Errorf("%s: %w (%w)", path, ErrLoad, err)
	}
	if m == nil {
		return nil, fmt.Errorf("%s: %w (%s)", path, ErrLoad, llamaReason())
	}
	return &Model{p: m, vocab: C.llama_model_get_vocab(m), path: path}, nil
}

// Close frees the model. It is nil-safe and idempotent.
func (m *Model) Close() error {
	if m == nil || m.p == nil {
		return nil
	}
	m.freePrivate()
	C.llama_model_free(m.p)
	m.p, m.vocab = nil, nil
	return nil
}

// Path returns the file the model was loaded from.
func (m *Model) Path() string { return m.path }

// NEmbd returns the embedding (hidden) size.
func (m *Model) NEmbd() int { return int(C.llama_model_n_embd(m.p)) }

// NLayer returns the number of decoder blocks.
func (m *Model) NLayer() int { return int(C.llama_model_n_layer(m.p)) }

// NHead returns the number of attention heads.
func (m *Model) NHead() int { return int(C.llama_model_n_head(m.p)) }

// NHeadKV returns the number of key/value heads.
func (m *Model) NHeadKV() int { return int(C.llama_model_n_head_kv(m.p)) }

// NCtxTrain returns the context length the model was trained with.
func (m *Model) NCtxTrain() int { return int(C.llama_model_n_ctx_train(m.p)) }

// NVocab returns the vocabulary size.
func (m *Model) NVocab() int { return int(C.llama_vocab_n_tokens(m.vocab)) }

// Meta returns a metadata value as a string, as llama.cpp sees it.
func (m *Model) Meta(key string) (string, bool) {
	ck := C.CString(key)
	defer C.free(unsafe.Pointer(ck))
	buf := make([]byte, 512)
	n := C.llama_model_meta_val_str(m.p, ck, (*C.char)(unsafe.Pointer(&buf[0])), C.size_t(len(buf)))
	if n < 0 {
		return "", false
	}
	if int(n) >= len(buf) {
		buf = make([]byte, int(n)+1)
		C.llama_model_meta_val_str(m.p, ck, (*C.char)(unsafe.Pointer(&buf[0])), C.size_t(len(buf)))
	}
	return string(buf[:n]), true
}

// BOS returns the beginning-of-sequence token, or -1.
func (m *Model) BOS() int32 { return int32(C.llama_vocab_bos(m.vocab)) }

// EOS returns the end-of-sequence token, or -1.
func (m *Model) EOS() int32 { return int32(C.llama_vocab_eos(m.vocab)) }

// AddBOS reports whether the tokenizer wants a BOS token at the start.
func (m *Model) AddBOS() bool { return bool(C.llama_vocab_get_add_bos(m.vocab)) }

// Tokenize converts text to tokens. addSpecial adds BOS/EOS as the model's
// tokenizer asks; parseSpecial lets control-token text map to those tokens.
// When the text holds a character the vocabulary cannot encode (no token
// for it and no byte fallback) the error is an *EncodeError naming the
// first such character and its byte offset.
func (m *Model) Tokenize(text string, addSpecial, parseSpecial bool) ([]int32, error) {
	toks, err := m.tokenize(text, addSpecial, parseSpecial)
	var ce *CppError
	if errors.As(err, &ce) && ce.Kind == "std::out_of_range" {
		if ch, off, ok := m.unencodable(text); ok {
			return nil, &EncodeError{Model: m.path, Char: ch, Offset: off, Err: err}
		}
	}
	if err != nil {
		return nil, fmt.Errorf("tokenize: %w", err)
	}
	return toks, nil
}

// tokenize is Tokenize without the search for the character that failed.
func (m *Model) tokenize(text string, addSpecial, parseSpecial bool) ([]int32, error) {
	if m == nil || m.vocab == nil {
		return nil, ErrClosed
	}
	if len(text) > 1<<30 {
		return nil, fmt.Errorf("text of %d bytes is too long", len(text))
	}
	ctext := C.CString(text)
	defer C.free(unsafe.Pointer(ctext))
	n := len(text) + 2
	for range 2 {
		toks := make([]int32, n)
		var exc C.mka_exc
		r := C.mka_tokenize(m.vocab, ctext, C.int32_t(len(text)), (*C.llama_token)(unsafe.Pointer(&toks[0])),
			C.int32_t(len(toks)), C.bool(addSpecial), C.bool(parseSpecial), &exc)
		if err := caught("llama_tokenize", &exc); err != nil {
			return nil, err
		}
		if r >= 0 {
			return toks[:r], nil
		}
		if r == C.INT32_MIN {
			return nil, errors.New("result too large")
		}
		n = int(-r)
	}
	return nil, errors.New("size changed between calls")
}

// unencodable returns the first character of text (with its byte offset)
// that the vocabulary cannot tokenize on its own. In SentencePiece, BPE and
// WordPiece vocabularies a text's characters are its first symbols, so the
// text is encodable exactly when each of its characters is.
func (m *Model) unencodable(text string) (string, int, bool) {
	tried := map[string]bool{}
	for off := 0; off < len(text); {
		_, n := utf8.DecodeRuneInString(text[off:])
		ch := text[off : off+n]
		if !tried[ch] {
			tried[ch] = true
			if _, err := m.tokenize(ch, false, false); err != nil {
				return ch, off, true
			}
		}
		off += n
	}
	return "", 0, false
}

// detokenize converts tokens back to text, dropping BOS/EOS. A token
// outside the vocabulary is an error. (The tests check Tokenize with it.)
func (m *Model) detokenize(toks []int32) (string, error) {
	if m == nil || m.vocab == nil {
		return "", ErrClosed
	}
	if len(toks) == 0 {
		return "", nil
	}
	n := len(toks)*8 + 16
	for range 2 {
		buf := make([]byte, n)
		var exc C.mka_exc
		r := C.mka_detokenize(m.vocab, (*C.llama_token)(unsafe.Pointer(&toks[0])), C.int32_t(len(toks)),
			(*C.char)(unsafe.Pointer(&buf[0])), C.int32_t(len(buf)), C.bool(true), C.bool(false), &exc)
		if err := caught("llama_detokenize", &exc); err != nil {
			return "", fmt.Errorf("detokenize: %w", err)
		}
		if r >= 0 {
			return string(buf[:r]), nil
		}
		n = int(-r)
	}
	return "", errors.New("detokenize: size changed between calls")
}

// Batch is a llama_batch of token inputs, each with a position, one
// sequence id and an output flag.
type Batch struct {
	c    C.struct_llama_batch
	cap  int
	embd int // floats per row of an embedding batch (NewEmbdBatch); 0: tokens
}

// NewBatch allocates a batch for up to capacity tokens. Close frees it.
func NewBatch(capacity int) *Batch {
	Init()
	return &Batch{c: C.llama_batch_init(C.int32_t(capacity), 0, 1), cap: capacity}
}

// Close frees the batch. It is nil-safe and idempotent.
func (b *Batch) Close() {
	if b == nil || b.cap == 0 {
		return
	}
	C.llama_batch_free(b.c)
	b.cap = 0
}

// Len returns the number of tokens in the batch.
func (b *Batch) Len() int { return int(b.c.n_tokens) }

// Clear empties the batch.
func (b *Batch) Clear() { b.c.n_tokens = 0 }

// Add appends a token at position pos of sequence seq; output asks for its
// logits (and, for the last block, its hidden state). It panics when the
// batch is full (a programmer error).
func (b *Batch) Add(tok int32, pos, seq int, output bool) {
	i := int(b.c.n_tokens)
	if i >= b.cap {
		panic("cgo: batch is full")
	}
	if b.embd != 0 {
		panic("cgo: Add on an embedding batch (AddEmbd)")
	}
	var o C.int8_t
	if output {
		o = 1
	}
	C.mka_batch_set(&b.c, C.int(i), C.llama_token(tok), C.llama_pos(pos), C.llama_seq_id(seq), o)
	b.c.n_tokens++
}

// releaseFreedMemory asks the C allocator to return freed memory to the
// system (glibc keeps per-thread arenas), so that resident-memory checks
// measure live memory.
func releaseFreedMemory() { C.mka_trim() }

// Token returns the i-th token of the batch.
func (b *Batch) Token(i int) int32 { return int32(C.mka_batch_get_token(&b.c, C.int(i))) }
