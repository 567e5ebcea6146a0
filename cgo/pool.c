// Shared ggml CPU thread pools. A decode with a capture hook is many
// graphs (one per captured tensor), and between two of them the hook runs
// Go code and, in the merge search, products on ggml's CPU device (the
// alignment statistics). ggml's pool workers poll for the next graph for
// a while before they sleep; a product on a backend with threads of its
// own then competes with them for the cores (measured on 2 cores: each
// product took 3× its time alone, a fifth of an alignment pass), and a
// pool whose workers sleep at once pays a wake-up for every graph of
// every decode instead. Computing the products on the decode's own pool
// does neither: its polling workers take them up at once. Sharing a pool
// needs one graph at a time, which mka_pool_enter/leave ensure.
#include <pthread.h>
#include <stddef.h>

#include "pool.h"

enum { mka_pool_max = 1024 };

static pthread_mutex_t mka_pool_init_mu = PTHREAD_MUTEX_INITIALIZER;
static struct ggml_threadpool *mka_pools[mka_pool_max + 1];

static void *mka_cpu_proc(const char *name) {
    ggml_backend_dev_t dev = ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU);
    if (dev == NULL) {
        return NULL;
    }
    return ggml_backend_reg_get_proc_address(ggml_backend_dev_backend_reg(dev), name);
}

struct ggml_threadpool *mka_pool(int n) {
    if (n < 1 || n > mka_pool_max) {
        return NULL;
    }
    pthread_mutex_lock(&mka_pool_init_mu);
    if (mka_pools[n] == NULL) {
        struct ggml_threadpool *(*tp_new)(struct ggml_threadpool_params *) =
            (struct ggml_threadpool * (*)(struct ggml_threadpool_params *)) mka_cpu_proc("ggml_threadpool_new");
        if (tp_new != NULL) {
            struct ggml_threadpool_params tpp = ggml_threadpool_params_default(n);
            mka_pools[n] = tp_new(&tpp);
        }
    }
    struct ggml_threadpool *tp = mka_pools[n];
    pthread_mutex_unlock(&mka_pool_init_mu);
    return tp;
}

int mka_pool_use(ggml_backend_t be, int n) {
    void (*set_threads)(ggml_backend_t, int) = (void (*)(ggml_backend_t, int))mka_cpu_proc("ggml_backend_set_n_threads");
    if (set_threads != NULL) {
        set_threads(be, n);
    }
    void (*set)(ggml_backend_t, struct ggml_threadpool *) =
        (void (*)(ggml_backend_t, struct ggml_threadpool *))mka_cpu_proc("ggml_backend_cpu_set_threadpool");
    struct ggml_threadpool *tp = mka_pool(n);
    if (set == NULL || tp == NULL) {
        return 0;
    }
    set(be, tp);
    return 1;
}

static pthread_mutex_t mka_pool_mu = PTHREAD_MUTEX_INITIALIZER;
static __thread int mka_pool_depth;

void mka_pool_enter(void) {
    if (mka_pool_depth++ == 0) {
        pthread_mutex_lock(&mka_pool_mu);
    }
}

void mka_pool_leave(void) {
    if (--mka_pool_depth == 0) {
        pthread_mutex_unlock(&mka_pool_mu);
    }
}

enum ggml_status mka_graph_compute(ggml_backend_t be, struct ggml_cgraph *gf) {
    mka_pool_enter();
    enum ggml_status st = ggml_backend_graph_compute(be, gf);
    mka_pool_leave();
    return st;
}
