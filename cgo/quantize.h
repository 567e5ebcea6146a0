#pragma once
#include <stdint.h>
#include "llama.h"
#include "safe.h"

#ifdef __cplusplus
extern "C" {
#endif

// mka_quantize_file runs llama_model_quantize with an importance matrix
// given as n_imatrix (name, values[lens[i]]) entries; n_imatrix may be 0.
// A C++ exception is caught: the result is then 1, with *e filled in.
uint32_t mka_quantize_file(const char *in, const char *out, llama_model_quantize_params *params,
                           int n_imatrix, const char **names, const float **values, const int *lens, mka_exc *e);

#ifdef __cplusplus
}
#endif
