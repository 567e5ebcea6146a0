#pragma once
// C wrappers around the llama.cpp calls that can throw a C++ exception. A
// C++ exception that reaches cgo aborts the whole process, so every such
// call goes through one of these: it returns the call's own result, or,
// when the call threw, fills *e with the exception's type and what() text
// (fixed buffers: nothing is allocated, so std::bad_alloc is reported too).
// The caller passes *e zeroed and checks e->thrown after the call.
#include <stdbool.h>
#include <stdint.h>
#include "llama.h"
#include "ggml-backend.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    int thrown;      // 1 when the call threw, with kind and what filled in
    char kind[64];   // the exception's type, e.g. "std::out_of_range"
    char what[512];  // its what() text, truncated
} mka_exc;

struct llama_model *mka_model_load(const char *path, struct llama_model_params p, mka_exc *e);
struct llama_context *mka_init_from_model(struct llama_model *m, struct llama_context_params p, mka_exc *e);
int32_t mka_tokenize(const struct llama_vocab *v, const char *text, int32_t text_len, llama_token *tokens,
                     int32_t n_tokens_max, bool add_special, bool parse_special, mka_exc *e);
int32_t mka_detokenize(const struct llama_vocab *v, const llama_token *tokens, int32_t n_tokens, char *text,
                       int32_t text_len_max, bool remove_special, bool unparse_special, mka_exc *e);
int32_t mka_decode(struct llama_context *c, struct llama_batch b, mka_exc *e);
ggml_backend_reg_t mka_backend_load(const char *path, mka_exc *e);

#ifdef __cplusplus
}

#include <exception>

// mka_caught fills e from the exception being handled (call it in a catch
// block).
void mka_caught(mka_exc *e);

// mka_guard returns f(), or fallback when f throws, with e filled in.
template <typename R, typename F>
static R mka_guard(mka_exc *e, R fallback, F f) {
    try {
        return f();
    } catch (...) {
        mka_caught(e);
        return fallback;
    }
}
#endif
