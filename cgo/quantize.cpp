// A C shim around llama_model_quantize: llama.cpp takes its importance
// matrix as a C++ std::unordered_map behind a void pointer, which Go cannot
// build, so this file builds it from flat arrays.
#include <string>
#include <unordered_map>
#include <vector>

#include "llama.h"
#include "quantize.h"

extern "C" uint32_t mka_quantize_file(const char *in, const char *out, llama_model_quantize_params *params,
                                      int n_imatrix, const char **names, const float **values, const int *lens,
                                      mka_exc *e) {
    std::unordered_map<std::string, std::vector<float>> imatrix;
    try {
        for (int i = 0; i < n_imatrix; i++) {
            imatrix[names[i]] = std::vector<float>(values[i], values[i] + lens[i]);
        }
        if (n_imatrix > 0) {
            params->imatrix = &imatrix;
        }
        uint32_t r = llama_model_quantize(in, out, params);
        params->imatrix = nullptr;
        return r;
    } catch (...) {
        params->imatrix = nullptr;
        mka_caught(e);
        return 1;
    }
}
