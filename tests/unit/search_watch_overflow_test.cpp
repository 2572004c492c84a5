// The folder watcher's answer to an inotify queue overflow (events were lost): a full reconcile of
// the root. The kernel only overflows the queue under load or with a lowered
// fs.inotify.max_queued_events, so the event is handed to the root's thread through
// folder_watcher::inject_event, the same handler that reads inotify's events.

#include <gtest/gtest.h>
#include <sys/inotify.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <thread>

#include "core/error.h"
#include "models/registry.h"
#include "search/service.h"
#include "search/vector_spaces.h"
#include "search/watch.h"
#include "store/sqlite_store.h"

namespace acg2vec {
namespace {

namespace fs = std::filesystem;

// Polls until done() or the limit passes; the caller asserts on the state afterwards.
bool wait_for(const std::function<bool()>& done, std::chrono::seconds limit = std::chrono::seconds(30)) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return done();
}

TEST(WatchOverflow, QueueOverflowTriggersAFullReconcile) {
  const fs::path dir = fs::path(ACG2VEC_TEST_WORK) / "watch-overflow";
  fs::remove_all(dir);
  fs::create_directories(dir / "models");
  fs::create_directories(dir / "tree");
  fs::copy_file(fs::path(ACG2VEC_TEST_DATA) / "renpy" / "demo_eileen_happy.png", dir / "tree" / "a.png");
  store::sqlite_store store(dir / "acg2vec.db");
  search::vector_spaces spaces(dir, store);
  models::model_registry models(dir / "models");
  models.load_all();
  search::search_service service(dir, store, spaces, models);
  service.define_spaces();

  search::watch_options options;
  options.settle = std::chrono::milliseconds(50);
  search::folder_watcher watcher(service, dir / "watch-state", {dir / "tree"}, options);
  watcher.start();
  auto status = [&] { return watcher.status().at(0); };
  ASSERT_TRUE(wait_for([&] { return status().state == "watching"; })) << status().state << " " << status().message;
  EXPECT_EQ(status().reconciles, 1u);
  EXPECT_EQ(status().items, 1u);
  EXPECT_EQ(store.count(), 1u);

  // A file the lost events would have reported: written while the (simulated) queue overflowed,
  // it must be there after the reconcile whether or not its own events arrive too.
  fs::copy_file(fs::path(ACG2VEC_TEST_DATA) / "renpy" / "demo_eileen_concerned.png", dir / "tree" / "b.png");
  watcher.inject_event(0, IN_Q_OVERFLOW);
  ASSERT_TRUE(wait_for([&] { return status().reconciles >= 2; })) << "no reconcile after IN_Q_OVERFLOW";
  ASSERT_TRUE(wait_for([&] { return status().items == 2 && status().pending == 0; }));
  EXPECT_EQ(store.count(), 2u);
  EXPECT_EQ(status().state, "watching");
  EXPECT_TRUE(status().message.empty());

  // No reconcile without an overflow: an ordinary event is handled by the batch path.
  const auto before = status().reconciles;
  fs::remove(dir / "tree" / "a.png");
  ASSERT_TRUE(wait_for([&] { return store.count() == 1; }));
  EXPECT_EQ(status().reconciles, before);
  EXPECT_THROW(watcher.inject_event(1, IN_Q_OVERFLOW), acg2vec::error);
  watcher.stop();
}

}  // namespace
}  // namespace acg2vec
