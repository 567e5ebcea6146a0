package cgo

/*
#include <malloc.h>

// mka_malloc_fix fixes glibc's mmap threshold at 1 MiB. By default it
// rises to the size of the largest mmap'd block freed (up to 32 MiB), and
// the trim threshold to twice that: the products' and compute buffers of
// ggml (tens of MiB, freed and made again) then come from the heap, and
// freed ones stay resident. A fixed threshold keeps every block of 1 MiB
// or more in its own mapping, returned to the system when freed.
static void mka_malloc_fix(void) { mallopt(M_MMAP_THRESHOLD, 1 << 20); }

static void mka_malloc_trim(void) { malloc_trim(0); }
*/
import "C"

// TrimHeap returns the C heap's free memory to the system (glibc's
// malloc_trim): call it after freeing large C buffers, where the peak
// memory counts.
func TrimHeap() { C.mka_malloc_trim() }

// fixMalloc fixes glibc's mmap threshold (mka_malloc_fix); Init calls it.
func fixMalloc() { C.mka_malloc_fix() }
