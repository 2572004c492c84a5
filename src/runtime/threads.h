#pragma once
// Thread configuration for model execution, applied once by the process that owns the models.

namespace acg2vec::runtime {

/// @brief Sets libtorch's intra-op thread count (<= 0: one per core) and keeps BLAS from
/// starting a second, competing pool of its own (large matrix products are split over torch's
/// pool instead, see ops_math.cpp). Call once, before the first model runs. Start the process
/// with OMP_WAIT_POLICY=PASSIVE where cores are shared (see threads.cpp for the measurement).
void configure_threads(int intra_op);

/// @brief The threads each forward pass runs on (as the compute thread sees it).
[[nodiscard]] int intra_op_threads();

}  // namespace acg2vec::runtime
