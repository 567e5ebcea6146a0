#pragma once
#include <stdbool.h>
#include "ggml.h"
#include "ggml-backend.h"
#include "llama.h"

#ifdef __cplusplus
extern "C" {
#endif

// mka_model_tensor returns the loaded weight named name, or NULL.
struct ggml_tensor *mka_model_tensor(const struct llama_model *model, const char *name);

// mka_weight_mapped reports whether t's data lies in a CPU buffer over a
// host pointer ("CPU_Mapped"): llama.cpp's buffers over the model file's
// read-only mapping when it loads with use_mmap.
bool mka_weight_mapped(const struct ggml_tensor *t);

// mka_weight_readable reports whether t's data can be read back with
// ggml_backend_tensor_get: its buffer is the plain CPU buffer type, a
// mapped one, or a buffer of a device other than the CPU (whose buffers
// all implement get_tensor). The CPU device's extra buffer types
// (CPU_REPACK, AMX) hold repacked data and have no get_tensor.
bool mka_weight_readable(const struct ggml_tensor *t);

// mka_weight_buffer_name names t's buffer type ("" when it has none).
const char *mka_weight_buffer_name(const struct ggml_tensor *t);

// mka_weight_own gives t a private buffer of ggml's plain CPU type
// holding a copy of data (ggml_nbytes(t) bytes) and points t's data and
// buffer at it; it returns that buffer, or NULL when it cannot be
// allocated (t unchanged). The caller keeps t's former data and buffer
// for mka_weight_disown.
ggml_backend_buffer_t mka_weight_own(struct ggml_tensor *t, const void *data);

// mka_weight_disown points t back at data and buffer (what it had before
// mka_weight_own) and frees the private buffer it had.
void mka_weight_disown(struct ggml_tensor *t, void *data, ggml_backend_buffer_t buffer);

#ifdef __cplusplus
}
#endif
