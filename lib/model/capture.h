// The capture interface: how calibration sees the activations of a forward without a dump file.
//
// at::Tensor is only forward-declared so that areas including this header do not compile the LibTorch
// headers (~9 s and ~1 GB per translation unit). An implementation of on_layer needs <ATen/ATen.h> (or
// <torch/torch.h>) in its own .cpp to use the tensors.
#pragma once

namespace at {
class Tensor;
}

namespace oscar::model {

class CaptureSink {
 public:
  virtual ~CaptureSink() = default;
  /// Called once per layer, batch row and forward call, in layer order (rows in order within a layer), with
  /// that row's new tokens exactly as they enter the KV cache (after q/k norm and RoPE): q [T, Hq, d],
  /// k [T, Hkv, d], v [T, Hkv, d], contiguous, in the model's dtype and on its device. Padding is never
  /// passed. The tensors are valid for the duration of the call only; clone to keep them.
  virtual void on_layer(int layer, int sequence, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) = 0;
};

}  // namespace oscar::model
