#include "cli/commands.h"
#include "core/error.h"

#include <vector>

namespace acg2vec::cli {

void add_pending_commands(CLI::App& app) {
  struct pending {
    const char* name;
    const char* help;
  };
  // Subcommands move out of this list as their modules land.
  // Empty now that every module has landed; kept so a future subcommand can be announced early.
  static const std::vector<pending> list;
  for (const auto& p : list) {
    auto* cmd = app.add_subcommand(p.name, p.help);
    cmd->allow_extras();
    cmd->callback([name = p.name] {
      fail(errc::not_implemented, "'{}' is not available in this build yet", name);
    });
  }
}

}  // namespace acg2vec::cli
