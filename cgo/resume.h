#pragma once
// Decoding a subset of the blocks, in a given order, on a batch of tokens
// or of embeddings (the stream entering the first of them). See
// resume.cpp.
#include "llama.h"
#include "safe.h"

#ifdef __cplusplus
extern "C" {
#endif

// mka_resume_check returns 0 when mka_decode_layers works for m on token
// batches (embd false) or also on embedding batches (embd true).
// Otherwise a positive reason: 1 an architecture whose graph is not
// known to allow it, 2 a graph that scales embedding batches again.
int mka_resume_check(const struct llama_model *m, bool embd);

// mka_decode_layers decodes b through blocks ids[0], ids[1], ...,
// ids[k-1] (distinct loaded blocks) and the output layer, as llama_decode
// does through all of them. It returns llama_decode's status, -3 when ids
// is not a list of distinct blocks of m, or -4 when a block would move in
// the graph's index-derived pattern (sliding window, NoPE).
int32_t mka_decode_layers(struct llama_context *c, struct llama_model *m, struct llama_batch b, const int32_t *ids,
                          int k, mka_exc *e);

#ifdef __cplusplus
}
#endif
