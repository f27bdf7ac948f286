// How the process hands out memory for tensors.
#pragma once

namespace cnnviz {

// Keep freed memory in the heap instead of giving it back to the kernel. cnnviz frees and allocates
// tensors of the same sizes at every step and every batch; glibc unmaps blocks above its mmap
// threshold (32 MiB at most) when they are freed, and each page of the next block of that size is
// page-faulted in again. On the virtual machines we measure on a first touch costs about 12 us per
// 4 KiB page (64 MiB: 200 ms, against 3.5 ms to write it again), so that was a quarter of an
// activation-maximization step and half of a resnet18 scan's forward pass at batch 16 (349 of 697 ms in
// float32, 264 of 442 ms in bfloat16). Every executable that runs networks calls this first; the
// price is that the process's resident memory stays at its peak until it exits.
void KeepFreedMemory();

}  // namespace cnnviz
