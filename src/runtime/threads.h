#pragma once
// Thread configuration for model execution, applied once by the process that owns the models.

namespace acg2vec::runtime {

/// @brief Sets libtorch's intra-op thread count (<= 0: one per core) and keeps BLAS from
/// starting a second, competing pool of its own.
void configure_threads(int intra_op);

}  // namespace acg2vec::runtime
