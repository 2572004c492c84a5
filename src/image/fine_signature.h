#pragma once
// The finer, second stage of near-duplicate search: a small aligned luma grid that survives crops of a
// few percent, rescaling, re-encoding and mirroring, but still sees local changes such as another
// facial expression on the same visual-novel sprite (which the perceptual signature, by design, does not).
//
// What is stored per item (fine_signature): the region left by trim_flat_borders (the same as the
// signature's), area-averaged to fine_side x fine_side luma (BT.601), quantised to 8 bits. The bytes
// are packed three to a float (integers below 2^24 are exact in float32), so the grid travels as one
// more vector of the item and every item store keeps it without a schema change. A header in front
// records what the keep rule needs and no store field holds: whether the file was lossless, and its
// size in bytes.
//
// Comparison (align_fine): the aspect ratio was dropped, so one grid is a crop of the other up to an
// independent scale and offset per axis. These are first estimated per axis from the row and column
// means (a 1-D search over scale 0.85..1.15 and offset -0.15..0.15), then refined jointly on the 2-D
// grid by coordinate descent with halving steps (single parameters, one edge alone, both edges around
// the centre: scale and offset are correlated); the mirror is tried too and the better one kept.
//
// Telling variants apart: the transformed copies' noise (JPEG, resampling, a crop's new edge and its
// sub-cell misalignment) is spread over the whole image, while variants of one drawing differ in one
// place. The query and every candidate aligned into its frame are smoothed alike ([1 2 1] on both axes:
// the bilinear warp softens the candidates, the query's own grid is sharp). Then every two candidates
// a, b of the same drawing meet: over the cells where they differ (|a - b| > fine_region_threshold) the
// query is placed on the line from b to a by least squares, t = sum (q - b)(a - b) / sum (a - b)^2
// (1: a copy of a, 0: of b). Noise unrelated to the pattern a - b averages out of t instead of adding
// up, as it does in a mean absolute difference. A candidate's distance is its worst showing, max over
// the others of 1 - t, plus its mean difference over the whole grid (which orders copies of one
// drawing, where no pair has evidence).
// Measured on the Ren'Py sprites of tests/data/renpy (tests/integration/test_dedup_variants.py): a
// transformed copy finds its own variant first in 45 of 45 cases, and every copy joins its own
// original in grouping (duplicate pairs P = R = 1.0), where the mean difference over the union of
// the candidates' disagreement cells let a 3 % crop of one Sylvie expression join another (P 0.978,
// R 0.982); those expressions differ in under 700 of 233,800 pixels. docs/duplicates.md has both
// rules on a second, harder set of copies.

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "image/decode.h"

namespace acg2vec::image {

inline constexpr int fine_side = 64;
inline constexpr int fine_cells = fine_side * fine_side;
inline constexpr int fine_header = 4;  ///< tag, version, lossless (0/1), file size in bytes
inline constexpr int fine_dim = fine_header + (fine_cells + 2) / 3;
inline constexpr float fine_tag = 7901.0f;  ///< first header value: marks a packed fine grid
inline constexpr float fine_version = 1.0f;

/// Where two fine grids stop counting as the same drawing: the mean absolute luma difference (0..1)
/// after alignment. Transformed copies stayed below 0.035 on the test set, sprites of one character
/// in another pose reached 0.19 and unrelated images started at 0.2.
inline constexpr float fine_different_above = 0.25f;
/// Cells whose aligned candidates differ by more than this (0..1 luma) form the disagreement region
/// (and, between two candidates, the cells where the query is placed between them).
inline constexpr float fine_region_threshold = 0.1f;

/// A decoded fine grid.
struct fine_grid {
  std::vector<float> luma;  ///< fine_cells values in 0..1, row-major
  bool lossless = false;
  double file_bytes = 0;
};

/// @brief Whether files of this format (sniff_image_format's names) keep every pixel: png, gif, bmp, tiff.
bool lossless_format(std::string_view format) noexcept;

/// @brief The packed fine grid of an image (fine_dim floats). file_bytes and lossless describe the
/// encoded file it came from (they only feed the keep rule).
std::vector<float> fine_signature(const image_rgb8& img, bool lossless, std::size_t file_bytes);
/// @brief Whether v looks like a packed fine grid (size and header).
bool is_fine_signature(std::span<const float> v) noexcept;
/// @brief Unpacks a stored grid; errc::bad_parameter when v is not one.
fine_grid unpack_fine(std::span<const float> v);

/// One grid resampled into another grid's frame.
struct fine_alignment {
  std::vector<float> warped;        ///< fine_cells values in the frame of the reference grid
  std::vector<std::uint8_t> valid;  ///< 1 where the cell mapped inside the source grid
  float error = 1.0f;               ///< mean absolute difference over valid cells
  bool mirrored = false;
};

/// @brief Aligns `source` to `reference` (scale and offset per axis, mirror) and resamples it there.
fine_alignment align_fine(const fine_grid& source, const fine_grid& reference);


/// @brief Mean tolerant difference (each cell of a against the closest of b's 3x3 neighbours) over
/// the cells that are valid in both and, when mask is not empty, set in mask; -1 when no cell counts.
float tolerant_difference(const fine_alignment& a, const fine_alignment& b, std::span<const std::uint8_t> mask);

/// @brief For a query and its first-stage candidates: each candidate's distance to the query (lower =
/// closer): its worst pairwise placement against the other candidates plus its mean difference (see
/// the header comment). Candidates that are a different drawing (alignment error above
/// fine_different_above) get +inf.
std::vector<float> rank_fine_candidates(const fine_grid& query, std::span<const fine_grid> candidates);

}  // namespace acg2vec::image
