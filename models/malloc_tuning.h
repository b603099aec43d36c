// glibc malloc settings for a process that trains models. Torch-free.
//
// glibc serves every allocation above M_MMAP_THRESHOLD (128 KiB at first, raised on the fly to
// at most 32 MiB) by a fresh mmap and returns it to the kernel when it is freed, and it trims
// the heap's free top above M_TRIM_THRESHOLD. A thread other than the main one allocates from an
// arena of 64 MiB heaps that are unmapped as soon as they are empty. A training step (on a job's
// worker thread) allocates and frees activations of 1-24 MB, 2 GB in all for the PixelCNN at
// batch 64, so every step faulted its activations in page by page again: measured on a logpd
// PixelCNN job, 3.2M minor faults in 5 minutes and 27% of its CPU time in the kernel, 45
// samples/s; with the settings below 266k faults and 63 samples/s (the rest of the kernel time
// is OpenBLAS's threads yielding).
#ifndef LOGP_MODELS_MALLOC_TUNING_H_
#define LOGP_MODELS_MALLOC_TUNING_H_

#include <string>

namespace logp {

// One arena for every thread (the main one, which grows without unmapping), freed blocks of up to
// 32 MiB kept in it for the next step, and up to 512 MiB of free top before trimming, unless
// GLIBC_TUNABLES names a glibc.malloc tunable (the user's choice wins). Call once, early in main(),
// before threads start. Returns what was done, for the log: "" when nothing was changed.
std::string KeepTrainingBlocksInHeap();

}  // namespace logp

#endif  // LOGP_MODELS_MALLOC_TUNING_H_
