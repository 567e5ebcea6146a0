// The exception-catching wrappers of safe.h.
#include <cstdlib>
#include <cstring>
#include <cxxabi.h>
#include <exception>
#include <typeinfo>

#include "safe.h"
#include "pool.h"

static void copy_str(char *dst, size_t n, const char *src) {
    strncpy(dst, src ? src : "", n - 1);
    dst[n - 1] = 0;
}

void mka_caught(mka_exc *e) {
    e->thrown = 1;
    copy_str(e->kind, sizeof e->kind, "unknown exception");
    copy_str(e->what, sizeof e->what, "");
    try {
        throw;
    } catch (const std::exception &ex) {
        const char *mangled = typeid(ex).name();
        int status = 0;
        char *name = abi::__cxa_demangle(mangled, nullptr, nullptr, &status);
        copy_str(e->kind, sizeof e->kind, status == 0 && name ? name : mangled);
        free(name);
        copy_str(e->what, sizeof e->what, ex.what());
    } catch (...) {
    }
}

extern "C" struct llama_model *mka_model_load(const char *path, struct llama_model_params p, mka_exc *e) {
    return mka_guard<llama_model *>(e, nullptr, [&] { return llama_model_load_from_file(path, p); });
}

extern "C" struct llama_context *mka_init_from_model(struct llama_model *m, struct llama_context_params p, mka_exc *e) {
    return mka_guard<llama_context *>(e, nullptr, [&] { return llama_init_from_model(m, p); });
}

extern "C" int32_t mka_tokenize(const struct llama_vocab *v, const char *text, int32_t text_len, llama_token *tokens,
                                int32_t n_tokens_max, bool add_special, bool parse_special, mka_exc *e) {
    return mka_guard<int32_t>(e, 0, [&] {
        return llama_tokenize(v, text, text_len, tokens, n_tokens_max, add_special, parse_special);
    });
}

extern "C" int32_t mka_detokenize(const struct llama_vocab *v, const llama_token *tokens, int32_t n_tokens, char *text,
                                  int32_t text_len_max, bool remove_special, bool unparse_special, mka_exc *e) {
    return mka_guard<int32_t>(e, 0, [&] {
        return llama_detokenize(v, tokens, n_tokens, text, text_len_max, remove_special, unparse_special);
    });
}

extern "C" int32_t mka_decode(struct llama_context *c, struct llama_batch b, mka_exc *e) {
    mka_pool_enter();
    int32_t r = mka_guard<int32_t>(e, -1, [&] { return llama_decode(c, b); });
    mka_pool_leave();
    return r;
}

extern "C" ggml_backend_reg_t mka_backend_load(const char *path, mka_exc *e) {
    return mka_guard<ggml_backend_reg_t>(e, nullptr, [&] { return ggml_backend_load(path); });
}
