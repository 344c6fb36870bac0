#include "io/layer_rotation.h"

#include "core/error.h"
#include "io/rotation_set.h"

namespace oscar::io {

runtime::Rotation read_layer_rotation(const std::string& path, int layer_id, std::string* objective) {
  RotationSet set = read_rotation_set(path);
  if (objective) *objective = set.objective;
  for (LayerRotation& layer : set.layers) {
    if (layer.layer_id != layer_id) continue;
    if (set.format_version == rotation_format::kPerKvHeadFormatVersion) {
      return runtime::Rotation::per_kv_head(layer.num_heads, layer.head_dim, std::move(layer.rotation));
    }
    return runtime::Rotation::per_layer(layer.head_dim, std::move(layer.rotation));
  }
  throw InputError(path + ": no layer " + std::to_string(layer_id));
}

}  // namespace oscar::io
