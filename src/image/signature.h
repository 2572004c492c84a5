#pragma once
// A model-free perceptual signature for near-duplicate search, usable directly as a vector in a
// FAISS inner-product or L2 index.
//
// Construction: near-uniform borders are peeled off first (rows/columns along which no channel varies by
// more than signature_border_flatness levels, repeated until stable, keeping at least a quarter of each
// side), so letterbox bars, added frames and plain-background margins do not count. What is left is
// area-averaged to 32x32 (aspect ratio dropped, so rescaled copies land on
// the same grid), converted to Y'CbCr (BT.601, values in 0..1), and each plane gets an orthonormal 2-D
// DCT-II. The signature keeps
//   - luma: the 8x8 lowest frequencies without DC (63 values): the layout of light and dark, which
//     survives rescaling, recompression, small crops and borders; dropping DC makes it blind to a
//     uniform brightness shift;
//   - chroma: the 3x3 lowest frequencies of Cb and Cr, DC included (18 values), weighted by
//     chroma_weight: the placement of the main colours, which separates line-art look-alikes that
//     differ in colour;
// and is L2-normalised (a flat grey image, which has nothing to describe, gives the zero vector).
//
// Mirroring: flipping an image left-right multiplies every DCT coefficient of odd horizontal frequency
// by -1, so perceptual_signature_mirrored() is exact and costs no second pass. Index the plain
// signature; query with both and keep the better match to find mirrored copies.

#include <vector>

#include "image/decode.h"

namespace acg2vec::image {

inline constexpr int signature_grid = 32;          ///< side of the downscaled image
inline constexpr int signature_luma_block = 8;     ///< luma frequencies kept per axis (DC dropped)
inline constexpr int signature_chroma_block = 3;   ///< chroma frequencies kept per axis (DC kept)
inline constexpr float signature_chroma_weight = 0.5f;
inline constexpr int signature_border_flatness = 32;  ///< max channel range along a trimmed border line
inline constexpr int signature_dim =
    signature_luma_block * signature_luma_block - 1 + 2 * signature_chroma_block * signature_chroma_block;

/// Similarity at or above which two signatures are reported as near-duplicates by default. On the
/// real fixture set (tests/unit/image_signature_test.cpp) edited copies scored >= 0.85 against their
/// original and different drawings <= 0.62, so 0.75 sits in the gap.
inline constexpr float near_duplicate_similarity = 0.75f;

/// @brief The region left after peeling near-uniform rows and columns off the edges (see above); the
/// finer stage (fine_signature.h) starts from the same region so both stages see the same content.
image_rgb8 trim_flat_borders(const image_rgb8& img);

/// @brief The L2-normalised perceptual signature of an image (signature_dim floats).
std::vector<float> perceptual_signature(const image_rgb8& img);

/// @brief The signature of the left-right mirrored image (computed from the same pass).
std::vector<float> perceptual_signature_mirrored(const image_rgb8& img);

/// @brief Mirrors an existing signature (what perceptual_signature_mirrored returns for its image).
std::vector<float> mirror_signature(const std::vector<float>& signature);

/// @brief Similarity in [0, 1] from the inner product (cosine) of two signatures: max(0, ip), capped at 1.
float signature_similarity_from_inner_product(float inner_product) noexcept;

/// @brief Similarity in [0, 1] from a SQUARED L2 distance between two signatures (what FAISS
/// IndexFlatL2 returns): for unit vectors ip = 1 - d2 / 2.
float signature_similarity_from_squared_l2(float squared_distance) noexcept;

}  // namespace acg2vec::image
