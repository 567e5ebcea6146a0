#pragma once
#include "ggml.h"
#include "llama.h"

#ifdef __cplusplus
extern "C" {
#endif

// mka_model_tensor returns the loaded weight named name, or NULL.
struct ggml_tensor *mka_model_tensor(const struct llama_model *model, const char *name);

#ifdef __cplusplus
}
#endif
