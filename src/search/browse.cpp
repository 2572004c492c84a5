// Browsing the collection: filtered, ordered pages (GET /v1/items with filters) and the tag counts
// behind the page's tag autocomplete (GET /v1/tags).
#include <algorithm>

#include "core/error.h"
#include "search/service.h"

namespace acg2vec::search {

namespace {

constexpr std::size_t max_page = 1000;

bool filters(const store::tag_query& q) {
  return !q.all_of.empty() || !q.any_of.empty() || !q.none_of.empty() || q.rating || !q.score_minimums.empty() ||
         !q.score_maximums.empty();
}

}  // namespace

browse_page search_service::browse(const browse_request& req) const {
  const auto& f = req.filter;
  if (f.limit < 1 || f.limit > max_page) fail(errc::bad_parameter, "limit must be in [1, {}], got {}", max_page, f.limit);
  browse_page page;
  if (req.like) {
    // Similarity order is the search's own ranking, with the same filters applied inside the index.
    search_request s;
    s.item_id = *req.like;
    s.space = req.space;
    s.filter = f;
    s.filter.offset = 0;
    s.filter.limit = 0;
    s.filter.order_by_score.reset();
    s.k = f.limit;
    s.offset = f.offset;
    auto result = search(s);
    page.space = result.space;
    page.hits = std::move(result.hits);
    if (filters(s.filter)) {
      auto ids = store_.search_tags(s.filter);
      page.total = ids.size() - static_cast<std::size_t>(std::count(ids.begin(), ids.end(), *req.like));
    } else {
      const auto n = store_.count();
      page.total = n > 0 ? n - 1 : 0;
    }
    return page;
  }
  // The whole id list in order, then one page of items: the total comes with it for free, and a
  // store query per page stays one query whatever the offset.
  auto q = f;
  q.offset = 0;
  q.limit = 0;
  const auto ids = store_.search_tags(q);
  page.total = ids.size();
  for (std::size_t n = f.offset; n < ids.size() && page.hits.size() < f.limit; ++n) {
    // An item deleted in between is simply not on the page.
    if (auto it = store_.get(ids[n])) page.hits.push_back({std::move(*it), 0.0f, 0.0f});
  }
  return page;
}

std::vector<store::tag_count> search_service::tag_counts(std::string_view prefix, std::size_t limit, float min_score,
                                                         const std::optional<std::string>& tagger) const {
  return store_.tag_counts(prefix, limit, min_score, tagger);
}

}  // namespace acg2vec::search