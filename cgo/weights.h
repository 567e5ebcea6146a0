#pragma once
#include <stdbool.h>
#include "ggml.h"
#include "llama.h"

#ifdef __cplusplus
extern "C" {
#endif

// mka_model_tensor returns the loaded weight named name, or NULL.
struct ggml_tensor *mka_model_tensor(const struct llama_model *model, const char *name);

// mka_weight_readable reports whether t's data can be read back with
// ggml_backend_tensor_get: its buffer is the plain CPU buffer type, or a
// buffer of a device other than the CPU (whose buffers all implement
// get_tensor). The CPU device's extra buffer types (CPU_REPACK, AMX) hold
// repacked data and have no get_tensor.
bool mka_weight_readable(const struct ggml_tensor *t);

// mka_weight_buffer_name names t's buffer type ("" when it has none).
const char *mka_weight_buffer_name(const struct ggml_tensor *t);

#ifdef __cplusplus
}
#endif
