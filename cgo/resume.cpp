// Decodes of a subset of the blocks. llama.cpp builds its graph anew for
// every decode (the context is created with graph reuse off) from
// llama_model::layers and llama_hparams::n_layer, and names block il's
// tensors by its place in that loop. Putting the chosen blocks first in
// layers (with their per-layer hyperparameters) and lowering n_layer to
// their count for the length of one llama_decode makes the graph run just
// those blocks, in that order: the batch's tokens (or embeddings, the
// stream entering the first chosen block) go in, the KV cache's first
// layers serve the blocks that run, and each block computes what it
// computes in the whole model on the same input, with the same kernels on
// the same data. The merge search uses it to start decodes at the first
// block a candidate changes (the blocks before it are unchanged, their
// output captured once) and to leave out blocks that are identities
// (zeroed output tensors: a block that adds exactly zero to the stream).
// The model is put back before mka_decode_layers returns, also when
// llama_decode throws; no other decode may use the model meanwhile.
#include <vector>

#include "llama-model.h"
#include "pool.h"
#include "resume.h"

// The architectures whose graphs compute, in a decode of some blocks,
// what each block computes in the whole model (merge/arch's table says
// the same: TestResumeAgrees). Other graphs derive something from the
// block index or scale the input again. What the graph derives from the
// index through hparams.swa_layers (gemma2, gemma3 and olmo2 with a
// sliding window) and smollm3's NoPE step are checked per decode
// (mka_pattern_kept).
extern "C" int mka_resume_check(const struct llama_model *m, bool embd) {
    switch (m->arch) {
    case LLM_ARCH_LLAMA:
    case LLM_ARCH_QWEN2:
    case LLM_ARCH_QWEN3:
    case LLM_ARCH_PHI3:
    case LLM_ARCH_INTERNLM2:
    case LLM_ARCH_EXAONE:
    case LLM_ARCH_OLMO2:
    case LLM_ARCH_SMOLLM3:
    case LLM_ARCH_GEMMA3: // its input scale is for token batches only
        break;
    case LLM_ARCH_GRANITE: // embedding_scale: tokens and embeddings
    case LLM_ARCH_GEMMA:   // × sqrt(n_embd): tokens and embeddings
    case LLM_ARCH_GEMMA2:
        if (embd && m->arch != LLM_ARCH_GRANITE) {
            return 2;
        }
        break;
    default:
        return 1;
    }
    const float s = m->hparams.f_embedding_scale;
    if (embd && s != 0.0f && s != 1.0f) {
        return 2;
    }
    return 0;
}

// mka_pattern_kept reports whether graph block i of a decode of blocks ids
// is what loaded block ids[i] is in the whole model, as far as the graph
// derives it from the block index: its sliding-window flag (the iswa KV
// cache is split by it when the context is made) and smollm3's NoPE.
static bool mka_pattern_kept(const llama_model &m, const int32_t *ids, int k) {
    const llama_hparams &hp = m.hparams;
    const uint32_t step = hp.n_no_rope_layer_step;
    for (int i = 0; i < k; i++) {
        if (hp.swa_layers[ids[i]] != hp.swa_layers[i]) {
            return false;
        }
        if (m.arch == LLM_ARCH_SMOLLM3 && step > 0 && ((ids[i] + 1) % step == 0) != ((i + 1) % step == 0)) {
            return false;
        }
    }
    return true;
}

namespace {

// selection puts blocks ids[0..k) of the model first, in that order, and
// the model back as it was when it goes out of scope.
struct selection {
    llama_model &m;
    uint32_t n;
    std::vector<llama_layer> layers;
    llama_hparams hp; // the per-layer arrays and n_layer, as loaded

    template <typename A> static void pick(A &dst, const A &src, const int32_t *ids, int k) {
        for (int i = 0; i < k; i++) {
            dst[i] = src[ids[i]];
        }
    }

    selection(llama_model &model, const int32_t *ids, int k)
        : m(model), n(model.hparams.n_layer), layers(model.layers), hp(model.hparams) {
        pick(m.layers, layers, ids, k);
        pick(m.hparams.n_head_arr, hp.n_head_arr, ids, k);
        pick(m.hparams.n_head_kv_arr, hp.n_head_kv_arr, ids, k);
        pick(m.hparams.n_ff_arr, hp.n_ff_arr, ids, k);
        pick(m.hparams.swa_layers, hp.swa_layers, ids, k);
        pick(m.hparams.recurrent_layer_arr, hp.recurrent_layer_arr, ids, k);
        m.hparams.n_layer = (uint32_t)k;
    }

    ~selection() {
        for (uint32_t i = 0; i < n; i++) {
            m.layers[i] = layers[i];
        }
        m.hparams.n_head_arr = hp.n_head_arr;
        m.hparams.n_head_kv_arr = hp.n_head_kv_arr;
        m.hparams.n_ff_arr = hp.n_ff_arr;
        m.hparams.swa_layers = hp.swa_layers;
        m.hparams.recurrent_layer_arr = hp.recurrent_layer_arr;
        m.hparams.n_layer = n;
    }
};

} // namespace

extern "C" int32_t mka_decode_layers(struct llama_context *c, struct llama_model *m, struct llama_batch b,
                                     const int32_t *ids, int k, mka_exc *e) {
    const uint32_t n = m->hparams.n_layer;
    if (k < 1 || (uint32_t)k > n || m->layers.size() != n) {
        return -3;
    }
    std::vector<bool> seen(n);
    for (int i = 0; i < k; i++) {
        if (ids[i] < 0 || (uint32_t)ids[i] >= n || seen[ids[i]]) {
            return -3;
        }
        seen[ids[i]] = true;
    }
    if (!mka_pattern_kept(*m, ids, k)) {
        return -4;
    }
    mka_pool_enter();
    int32_t r = mka_guard<int32_t>(e, -1, [&] {
        selection s(*m, ids, k);
        return llama_decode(c, b);
    });
    mka_pool_leave();
    return r;
}
