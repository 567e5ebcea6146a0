package kld

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"

	"github.com/mka-gguf/mka-gguf/cgo"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/runner"
)

// A base file holds a base model's next-token distributions at the scored
// positions of a text, so that many candidates can be compared with it
// without loading the base again. Layout, little-endian:
//
//	magic "MKAKLD01"
//	uint32 vocab, ctx (chunk length), chunks, first (first scored position), k (0: whole vocabulary)
//	int32  tokens[chunks·ctx]
//	per chunk, per position j in [first, ctx−1):
//	    float32 ln p(next), int32 top token, float32 ln p(tail)
//	    k == 0: float32 ln p[vocab]
//	    k > 0:  int32 ids[k], float32 ln p[k]   (most probable first)
//
// With k > 0 a 32,000-token vocabulary over 20,000 positions takes 8·k
// bytes per position (41 MB at k = 256) instead of 2.6 GB.
const baseMagic = "MKAKLD01"

// BaseFile is an open base file, read chunk by chunk.
type BaseFile struct {
	Path   string
	Vocab  int
	Ctx    int
	First  int
	TopK   int       // 0: whole vocabulary
	Chunks [][]int32 // the text's chunks, as decoded
	f      *os.File
	r      *bufio.Reader
	next   int // next chunk to read
	buf    []byte
}

// posBytes returns the bytes of one position's record.
func posBytes(vocab, k int) int {
	if k == 0 {
		return 12 + 4*vocab
	}
	return 12 + 8*k
}

// Save decodes chunks with base and writes its distributions at positions
// [opt.First, len−1) of every chunk to w, keeping opt.TopK tokens each (0:
// all). It returns the base's perplexity on those positions and its
// standard error (llama.cpp's definition).
func Save(w io.Writer, base *cgo.Model, chunks [][]int32, opt Options) (ppl, stderr float64, err error) {
	t, err := checkChunks(chunks, opt.First)
	if err != nil {
		return 0, 0, err
	}
	vocab, k := base.NVocab(), keptTokens(opt.TopK, base.NVocab())
	bw := bufio.NewWriterSize(w, 1<<20)
	hdr := []byte(baseMagic)
	for _, v := range []int{vocab, t, len(chunks), opt.First, k} {
		hdr = binary.LittleEndian.AppendUint32(hdr, uint32(v))
	}
	for _, c := range chunks {
		for _, tok := range c {
			hdr = binary.LittleEndian.AppendUint32(hdr, uint32(tok))
		}
	}
	if _, err := bw.Write(hdr); err != nil {
		return 0, 0, err
	}
	m := t - 1 - opt.First
	dists := make([]Dist, min(runner.SeqsPerDecode(t, opt.BatchTokens), len(chunks))*m) // reused
	var nll, nll2 float64
	var buf []byte
	err = decodeBase(base, chunks, opt, k, func(_, n int) []Dist { return dists[:n*m] }, func(_, _ int, d []Dist) error {
		for i := range d {
			nll -= float64(d[i].Next)
			nll2 += float64(d[i].Next) * float64(d[i].Next)
			buf = appendDist(buf[:0], &d[i])
			if _, err := bw.Write(buf); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, 0, err
	}
	if err := bw.Flush(); err != nil {
		return 0, 0, err
	}
	mean, e := meanErr(nll, nll2, len(chunks)*m)
	return math.Exp(mean), math.Exp(mean) * e, nil
}

func appendDist(b []byte, d *Dist) []byte {
	le := binary.LittleEndian
	b = le.AppendUint32(b, math.Float32bits(d.Next))
	b = le.AppendUint32(b, uint32(d.Top))
	b = le.AppendUint32(b, math.Float32bits(float32(d.Tail)))
	for _, id := range d.IDs {
		b = le.AppendUint32(b, uint32(id))
	}
	for _, lp := range d.LogP {
		b = le.AppendUint32(b, math.Float32bits(lp))
	}
	return b
}

// OpenBase opens a base file written by Save and reads its header and
// tokens; the distributions are read by CompareFile. A file of the wrong
// kind, size or content is an error naming it.
func OpenBase(path string) (*BaseFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	bf, err := readHeader(path, f)
	if err != nil {
		f.Close()
		return nil, err
	}
	return bf, nil
}

func readHeader(path string, f *os.File) (*BaseFile, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	r := bufio.NewReaderSize(f, 1<<20)
	hdr := make([]byte, len(baseMagic)+20)
	if _, err := io.ReadFull(r, hdr); err != nil || string(hdr[:len(baseMagic)]) != baseMagic {
		return nil, fmt.Errorf("%s: not a base log-probability file (written by mka-gguf eval --save-base)", path)
	}
	u := func(i int) int { return int(binary.LittleEndian.Uint32(hdr[len(baseMagic)+4*i:])) }
	bf := &BaseFile{Path: path, Vocab: u(0), Ctx: u(1), First: u(3), TopK: u(4), f: f, r: r}
	chunks := u(2)
	if bf.Vocab < 2 || bf.Vocab > 1<<24 || bf.Ctx < 2 || bf.Ctx > 1<<20 || chunks < 1 || chunks > 1<<24 ||
		bf.First >= bf.Ctx-1 || bf.TopK >= bf.Vocab {
		return nil, fmt.Errorf("%s: corrupt header (vocab %d, ctx %d, chunks %d, first %d, top-k %d)", path, bf.Vocab, bf.Ctx, chunks, bf.First, bf.TopK)
	}
	m := int64(bf.Ctx - 1 - bf.First)
	want := int64(len(hdr)) + 4*int64(chunks)*int64(bf.Ctx) + int64(chunks)*m*int64(posBytes(bf.Vocab, bf.TopK))
	if st.Size() != want {
		return nil, fmt.Errorf("%s: %d bytes, want %d for %d chunks of %d tokens (truncated or not a base file)", path, st.Size(), want, chunks, bf.Ctx)
	}
	raw := make([]byte, 4*chunks*bf.Ctx)
	if _, err := io.ReadFull(r, raw); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	bf.Chunks = make([][]int32, chunks)
	for i := range bf.Chunks {
		c := make([]int32, bf.Ctx)
		for j := range c {
			c[j] = int32(binary.LittleEndian.Uint32(raw[4*(i*bf.Ctx+j):]))
			if c[j] < 0 || int(c[j]) >= bf.Vocab {
				return nil, fmt.Errorf("%s: token %d outside the vocabulary of %d", path, c[j], bf.Vocab)
			}
		}
		bf.Chunks[i] = c
	}
	return bf, nil
}

// Close closes the file.
func (bf *BaseFile) Close() error {
	if bf == nil || bf.f == nil {
		return nil
	}
	err := bf.f.Close()
	bf.f = nil
	return err
}

// readChunks reads the distributions of the next len(dst) chunks.
func (bf *BaseFile) readChunks(first int, dst [][]Dist) error {
	if first != bf.next {
		return fmt.Errorf("%s: chunks are read in order (want %d, asked for %d)", bf.Path, bf.next, first)
	}
	n := posBytes(bf.Vocab, bf.TopK)
	if cap(bf.buf) < n {
		bf.buf = make([]byte, n)
	}
	b := bf.buf[:n]
	le := binary.LittleEndian
	for s := range dst {
		for j := range dst[s] {
			if _, err := io.ReadFull(bf.r, b); err != nil {
				return fmt.Errorf("%s: chunk %d: %w", bf.Path, first+s, err)
			}
			d := &dst[s][j]
			d.Next = math.Float32frombits(le.Uint32(b))
			d.Top = int32(le.Uint32(b[4:]))
			d.Tail = float64(math.Float32frombits(le.Uint32(b[8:])))
			p := b[12:]
			cnt := bf.Vocab
			if bf.TopK > 0 {
				cnt = bf.TopK
				d.IDs = d.IDs[:0]
				for i := range cnt {
					id := int32(le.Uint32(p[4*i:]))
					if id < 0 || int(id) >= bf.Vocab {
						return fmt.Errorf("%s: chunk %d: token %d outside the vocabulary", bf.Path, first+s, id)
					}
					d.IDs = append(d.IDs, id)
				}
				p = p[4*cnt:]
			} else {
				d.IDs, d.Tail = nil, math.Inf(-1)
			}
			d.LogP = d.LogP[:0]
			for i := range cnt {
				d.LogP = append(d.LogP, math.Float32frombits(le.Uint32(p[4*i:])))
			}
			if d.Top < 0 || int(d.Top) >= bf.Vocab || math.IsNaN(float64(d.Next)) {
				return fmt.Errorf("%s: chunk %d: corrupt record", bf.Path, first+s)
			}
		}
	}
	bf.next += len(dst)
	return nil
}

// CompareFile scores model against the base distributions in bf, on the
// chunks stored there. It reads bf once, front to back.
func CompareFile(bf *BaseFile, model *cgo.Model, opt Options) (Summary, error) {
	if model.NVocab() != bf.Vocab {
		return Summary{}, fmt.Errorf("%s has a vocabulary of %d tokens, the base in %s %d", model.Path(), model.NVocab(), bf.Path, bf.Vocab)
	}
	if bf.next != 0 {
		return Summary{}, errors.New("kld: base file already read")
	}
	opt.First = bf.First
	s, err := run(model, bf.Chunks, opt, bf.readChunks)
	s.TopK = bf.TopK
	return s, err
}
