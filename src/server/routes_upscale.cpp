// POST /v1/upscale: an image in, the upscaled image out (PNG by default).
#include <chrono>
#include <mutex>

#include "image/decode.h"
#include "image/encode.h"
#include "models/registry.h"
#include "runtime/compute.h"
#include "server/routes.h"

namespace acg2vec::server {

void register_upscale_routes(http_server& server, model_route_context ctx) {
  models::model_registry& reg = *ctx.registry;
  // One upscale at a time: each uses every intra-op thread, and its memory (tile
  // activations plus the whole output image) must not be multiplied by the HTTP worker count.
  // Other requests wait here rather than run the machine out of memory.
  auto running = std::make_shared<std::mutex>();
  server.add(
      "POST", "/v1/upscale", "v1.upscale",
      [&reg, ctx, running](const http_request& req, http_response& res) {
        const auto bytes = require_file(req, {"image", "file"}, ctx.max_upload_bytes);
        const auto e = reg.resolve(find_param(req, "model").value_or(""), models::model_task::upscaler);
        if (!e->upscale) fail(errc::bad_parameter, "model '{}' is not an upscaler", e->manifest.name);
        const models::upscaler& u = *e->upscale;
        const std::string_view format = image::parse_output_format(find_param(req, "format").value_or("png"));
        const int quality = static_cast<int>(int_param(req, "quality", 92, 1, 100));
        // The pack's input limit (and the server's) applies to the header, before any pixel is
        // decoded; the output limit is checked by the upscaler before it allocates the result.
        image::decode_limits limits = decode_limits_of(ctx);
        limits.max_pixels = std::min<std::uint64_t>(limits.max_pixels, u.spec().max_input_pixels);
        const auto img = image::decode_image_rgba(bytes, limits);
        image::image_rgba8 out;
        double seconds = 0;  // the upscale itself, not the wait for the one before it
        {
          std::lock_guard lock(*running);
          const auto start = std::chrono::steady_clock::now();
          // On the compute thread, like every forward: there it has the process's OpenMP team
          // (--intra-op-threads); an HTTP worker has one OpenMP thread and a lower priority.
          out = runtime::on_compute_thread([&] { return u.upscale(img); });
          seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        }
        res.set_content(image::encode_image(out, format, quality), std::string(image::output_content_type(format)));
        res.set_header("X-Acg2vec-Model", e->manifest.name);
        res.set_header("X-Acg2vec-Size", std::to_string(out.width) + "x" + std::to_string(out.height));
        res.set_header("X-Acg2vec-Seconds", std::to_string(seconds));
      },
      route_access::read);
}

}  // namespace acg2vec::server