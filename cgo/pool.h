#pragma once
// One ggml CPU thread pool per thread count for the whole process, shared
// by every llama.cpp context and every product this package computes on
// the CPU device, and the lock that keeps them to one graph at a time. See
// pool.c.
#include "ggml.h"
#include "ggml-backend.h"

#ifdef __cplusplus
extern "C" {
#endif

// mka_pool returns the process's thread pool of n threads, made on first
// use through the CPU device's own backend (a loaded variant's code), or
// NULL when the backend has none. It is never freed.
struct ggml_threadpool *mka_pool(int n);

// mka_pool_use makes CPU backend be compute with n threads on
// mka_pool(n); it returns 0 when it has no pool (then be keeps ggml's
// threads of its own per graph).
int mka_pool_use(ggml_backend_t be, int n);

// mka_pool_enter and mka_pool_leave bracket a computation on the pools:
// one at a time in the process, except that the thread already inside one
// may nest another (a product inside a decode's capture hook, which runs
// between two of the decode's graphs).
void mka_pool_enter(void);
void mka_pool_leave(void);

// mka_graph_compute computes gf on be inside mka_pool_enter/leave.
enum ggml_status mka_graph_compute(ggml_backend_t be, struct ggml_cgraph *gf);

#ifdef __cplusplus
}
#endif
