// A C shim over llama.cpp's table of loaded weights. llama.cpp keeps every
// weight of a loaded model in llama_model::tensors_by_name and exposes it to
// its own tools through llama_internal_get_tensor_map (src/llama-model.h of
// the pinned module). That header pulls in most of llama.cpp's internals, so
// only this one declaration is repeated here: its mangled name does not
// depend on the return type, and the pinned sources define it.
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "ggml.h"
#include "ggml-backend.h"
#include "llama.h"
#include "weights.h"

const std::vector<std::pair<std::string, ggml_tensor *>> &llama_internal_get_tensor_map(const llama_model *model);

extern "C" struct ggml_tensor *mka_model_tensor(const struct llama_model *model, const char *name) {
    try {
        for (const auto &it : llama_internal_get_tensor_map(model)) {
            if (it.first == name) {
                return it.second;
            }
        }
    } catch (...) {
    }
    return nullptr;
}

// mka_mapped_type returns the buffer type of ggml's CPU buffers over a
// host pointer ("CPU_Mapped"), which ggml keeps private: the type of a
// probe buffer made over a small static array.
static ggml_backend_buffer_type_t mka_mapped_type() {
    static ggml_backend_buffer_type_t type = [] {
        alignas(64) static char probe[64];
        ggml_backend_buffer_t b = ggml_backend_cpu_buffer_from_ptr(probe, sizeof probe);
        ggml_backend_buffer_type_t t = ggml_backend_buffer_get_type(b);
        ggml_backend_buffer_free(b);
        return t;
    }();
    return type;
}

extern "C" bool mka_weight_mapped(const struct ggml_tensor *t) {
    return t != nullptr && t->buffer != nullptr && ggml_backend_buffer_get_type(t->buffer) == mka_mapped_type();
}

extern "C" bool mka_weight_readable(const struct ggml_tensor *t) {
    if (t == nullptr || t->buffer == nullptr) {
        return false;
    }
    ggml_backend_buffer_type_t buft = ggml_backend_buffer_get_type(t->buffer);
    if (buft == ggml_backend_cpu_buffer_type() || buft == mka_mapped_type()) {
        return true;
    }
    ggml_backend_dev_t dev = ggml_backend_buft_get_device(buft);
    return dev != nullptr && ggml_backend_dev_type(dev) != GGML_BACKEND_DEVICE_TYPE_CPU;
}

extern "C" const char *mka_weight_buffer_name(const struct ggml_tensor *t) {
    if (t == nullptr || t->buffer == nullptr) {
        return "";
    }
    return ggml_backend_buft_name(ggml_backend_buffer_get_type(t->buffer));
}

extern "C" ggml_backend_buffer_t mka_weight_own(struct ggml_tensor *t, const void *data) {
    const size_t n = ggml_nbytes(t);
    ggml_backend_buffer_t b = ggml_backend_buft_alloc_buffer(ggml_backend_cpu_buffer_type(), n);
    if (b == nullptr) {
        return nullptr;
    }
    // As llama.cpp marks its weight buffers: the scheduler prefers the
    // weight's backend for the ops that use it.
    ggml_backend_buffer_set_usage(b, GGML_BACKEND_BUFFER_USAGE_WEIGHTS);
    memcpy(ggml_backend_buffer_get_base(b), data, n);
    t->data = ggml_backend_buffer_get_base(b);
    t->buffer = b;
    return b;
}

extern "C" void mka_weight_disown(struct ggml_tensor *t, void *data, ggml_backend_buffer_t buffer) {
    ggml_backend_buffer_t own = t->buffer;
    t->data = data;
    t->buffer = buffer;
    ggml_backend_buffer_free(own);
}
