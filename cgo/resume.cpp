// Resumed decodes. llama.cpp builds its graph anew for every decode (the
// context is created with graph reuse off) from llama_model::layers and
// llama_hparams::n_layer, and names block il's tensors by its place in
// that loop. Rotating the first blocks to the end of layers (with their
// per-layer hyperparameters) and lowering n_layer for the length of one
// llama_decode makes the graph start at block first: the batch's
// embeddings take the place of the token embeddings, the KV cache's first
// layers serve the blocks that run, and the result is that of the whole
// model on the same input, computed by the same kernels on the same data.
// The model is put back before mka_decode_from returns, also when
// llama_decode throws; no other decode may use the model meanwhile.
#include <algorithm>

#include "llama-model.h"
#include "resume.h"

extern "C" int mka_resume_check(const struct llama_model *m) {
    switch (m->arch) {
    case LLM_ARCH_LLAMA:
    case LLM_ARCH_QWEN2:
    case LLM_ARCH_QWEN3:
        break;
    default:
        return 1;
    }
    if (m->hparams.f_embedding_scale != 0.0f) {
        return 2;
    }
    return 0;
}

namespace {

// rotation turns the model's first k blocks to the end and back.
struct rotation {
    llama_model &m;
    uint32_t n, k;

    template <typename A> void rotate(A &a, uint32_t by) { std::rotate(a.begin(), a.begin() + by, a.begin() + n); }

    void turn(uint32_t by) {
        rotate(m.layers, by);
        rotate(m.hparams.n_head_arr, by);
        rotate(m.hparams.n_head_kv_arr, by);
        rotate(m.hparams.n_ff_arr, by);
        rotate(m.hparams.swa_layers, by);
        rotate(m.hparams.recurrent_layer_arr, by);
    }

    rotation(llama_model &model, uint32_t first) : m(model), n(model.hparams.n_layer), k(first) {
        turn(k);
        m.hparams.n_layer = n - k;
    }

    ~rotation() {
        m.hparams.n_layer = n;
        turn(n - k);
    }
};

} // namespace

extern "C" int32_t mka_decode_from(struct llama_context *c, struct llama_model *m, struct llama_batch b, int first,
                                   mka_exc *e) {
    if (first < 0 || (uint32_t)first >= m->hparams.n_layer || m->layers.size() != m->hparams.n_layer) {
        return -3;
    }
    rotation r(*m, (uint32_t)first);
    return mka_guard<int32_t>(e, -1, [&] { return llama_decode(c, b); });
}
