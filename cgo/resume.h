#pragma once
// Decoding from the middle of the model: blocks [first, n_layer) only, on
// a batch of embeddings (the input of block first). See resume.cpp.
#include "llama.h"
#include "safe.h"

#ifdef __cplusplus
extern "C" {
#endif

// mka_resume_check returns 0 when mka_decode_from can skip blocks of m:
// a llama, qwen2 or qwen3 graph without an embedding scale. Otherwise a
// positive reason: 1 another architecture, 2 an embedding scale.
int mka_resume_check(const struct llama_model *m);

// mka_decode_from decodes b, whose rows are embeddings (the residual
// stream entering block first), through blocks first, first+1, ... and the
// output layer, as llama_decode does for the whole model. It returns
// llama_decode's status, or -3 when first is out of range.
int32_t mka_decode_from(struct llama_context *c, struct llama_model *m, struct llama_batch b, int first, mka_exc *e);

#ifdef __cplusplus
}
#endif
