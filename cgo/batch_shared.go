package cgo

/*
#include "llama.h"

static void mka_batch_set_shared(struct llama_batch *b, int i, llama_token tok, llama_pos pos, const int *seqs, int n, int8_t out) {
	b->token[i] = tok;
	b->pos[i] = pos;
	b->n_seq_id[i] = n;
	for (int k = 0; k < n; k++) {
		b->seq_id[i][k] = seqs[k];
	}
	b->logits[i] = out;
}
*/
import "C"

import "unsafe"

// SharedBatch is a Batch whose tokens may belong to several sequences at
// once: a prompt shared by several continuations is then decoded once and
// seen by all of them (the contexts mka-gguf creates keep one KV stream
// for all sequences, which llama.cpp needs for this).
type SharedBatch struct {
	Batch
	seqs int
}

// NewSharedBatch allocates a batch of up to capacity tokens, each in up to
// seqs sequences. Close frees it; Decode takes &b.Batch.
func NewSharedBatch(capacity, seqs int) *SharedBatch {
	Init()
	return &SharedBatch{Batch: Batch{c: C.llama_batch_init(C.int32_t(capacity), 0, C.int32_t(seqs)), cap: capacity}, seqs: seqs}
}

// AddShared appends a token at position pos of every sequence in seqs;
// output asks for its logits. It panics when the batch is full or seqs
// has more sequences than the batch was made for (programmer errors).
func (b *SharedBatch) AddShared(tok int32, pos int, seqs []int, output bool) {
	i := int(b.c.n_tokens)
	if i >= b.cap {
		panic("cgo: batch is full")
	}
	if len(seqs) == 0 || len(seqs) > b.seqs {
		panic("cgo: AddShared needs 1 to NewSharedBatch's seqs sequences")
	}
	ids := make([]C.int, len(seqs))
	for k, s := range seqs {
		ids[k] = C.int(s)
	}
	var o C.int8_t
	if output {
		o = 1
	}
	C.mka_batch_set_shared(&b.c, C.int(i), C.llama_token(tok), C.llama_pos(pos), (*C.int)(unsafe.Pointer(&ids[0])), C.int(len(seqs)), o)
	b.c.n_tokens++
}
