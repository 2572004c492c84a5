#pragma once
// Keeps large freed CPU tensor buffers for reuse (see block_cache.cpp for why).

namespace acg2vec::runtime {

/// @brief Makes libtorch's CPU allocations of 1 MiB and more go through a cache of freed
/// blocks (bounded; smaller ones are unchanged). Idempotent; the executor calls it.
void install_block_cache();

}  // namespace acg2vec::runtime
