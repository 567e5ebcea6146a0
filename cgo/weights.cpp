// A C shim over llama.cpp's table of loaded weights. llama.cpp keeps every
// weight of a loaded model in llama_model::tensors_by_name and exposes it to
// its own tools through llama_internal_get_tensor_map (src/llama-model.h of
// the pinned module). That header pulls in most of llama.cpp's internals, so
// only this one declaration is repeated here: its mangled name does not
// depend on the return type, and the pinned sources define it.
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

extern "C" bool mka_weight_readable(const struct ggml_tensor *t) {
    if (t == nullptr || t->buffer == nullptr) {
        return false;
    }
    ggml_backend_buffer_type_t buft = ggml_backend_buffer_get_type(t->buffer);
    if (buft == ggml_backend_cpu_buffer_type()) {
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
