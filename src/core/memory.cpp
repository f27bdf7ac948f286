#include "cnnviz/core/memory.h"

#include <malloc.h>

#include <climits>

namespace cnnviz {

void KeepFreedMemory() {
  // No mmap'd blocks at all (a thread's arena that cannot hold a large block retries in the main
  // arena's heap), and never trim the heap's top.
  mallopt(M_MMAP_MAX, 0);
  mallopt(M_TRIM_THRESHOLD, INT_MAX);
}

}  // namespace cnnviz
