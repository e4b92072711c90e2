// The official exact post-processing of sliding-window inference, fused (reference:
// zsseg_rt/ops/reference.py::segment_windows). For windows k placed at (y1, y2, x1, x2) in the rescaled image:
//   window scores  s_k = f(bilinear(logits_k -> head_h x head_w)) - class_bias, cut to the window's extent
//                        (f = sigmoid or identity; the window's graph input was zero-padded to the head size)
//   merged         m   = (s_1 + s_2 + ...) / count  where windows overlap, in window order (fp32, as numpy)
//   output         labels/scores = argmax over classes of bilinear(m -> out_h x out_w) (torch's tie/NaN rules)
// exactly the order of pipeline.calibrated_window_scores -> merge_windows -> finalize_scores, with the same
// per-element arithmetic as upsample_cpu and segment_cpu (shared inline functions), so the results are the
// unfused path's. No [C, H, W] buffer of either size exists: the CPU kernel streams rows, keeping per thread one
// merged rescaled row [C, scaled_w], two of them blended along x to the output columns [C, out_w] and, per window
// covering a row, two logits rows blended along x to the window's columns [C, head_w].
//
// softmax = true (training-free family, SCLIP/MaskCLIP slide inference): the windows' raw logits are averaged
// (f = identity, no bias), the average is multiplied by logit_scale, resized to the output size, and at each
// output pixel p_c = exp(v_c - max v) / sum_c' exp(v_c' - max v) (classes summed in index order, as NumPy and
// torch reduce a non-inner axis), p_c = 0 for classes flagged in class_drop (SCLIP's area filter), then
// p_c - class_bias_c; labels/scores are the argmax of that (torch's rules). A pixel whose resized logits hold a
// NaN or whose max is not finite gets label 0 and score NaN (softmax of such a vector is all NaN, and torch's
// argmax of an all-NaN vector is 0). Reference: zsseg_rt/ops/reference.py::segment_windows(softmax=True).
//
// Synonyms (softmax only): with class_of set, the logits' `classes` rows are NAMES, and class_of[n] is the class
// of name n (names grouped by class in class order: class_of[0] = 0, each next entry equal or one more, the last
// = labels_count - 1). The softmax runs over the names; a class's probability is the max over its names'
// probabilities (the training-free methods' official rule: SCLIP/NACLIP/SC-CLIP postprocess_result); class_drop,
// class_bias and the argmax are per class (labels_count entries). Streamed name by name: no [classes] buffer.
#pragma once
#include "zsseg/bilinear.h"
#include "zsseg/common.h"

namespace zsseg {

struct WindowPlacement {
  int32_t y1, y2, x1, x2;  // in the rescaled image; extent <= the head size
};

struct SegmentWindowsParams {
  const void* logits = nullptr;  // [num_windows, classes, in_height, in_width], contiguous, `dtype`
  DType dtype = DType::Float32;  // Float16: CUDA only; math is fp32
  int64_t num_windows = 0, classes = 0, in_height = 0, in_width = 0;
  const WindowPlacement* windows = nullptr;     // [num_windows], HOST memory (read by the launcher)
  int64_t head_height = 0, head_width = 0;      // per-window resize target (the model's image size)
  int64_t scaled_height = 0, scaled_width = 0;  // the rescaled image the windows tile
  int64_t out_height = 0, out_width = 0;        // the output (original image) size
  const float* class_bias = nullptr;            // [labels] finite, or nullptr; on the logits' device
  bool apply_sigmoid = true;                    // ignored when softmax is set
  bool softmax = false;                         // softmax over classes at the output (see above)
  float logit_scale = 1.f;                      // softmax: multiplies the averaged logits before the output resize
  const int32_t* class_of = nullptr;  // softmax: [classes] name -> class (see above), on the logits' device; or nullptr
  int64_t labels_count = 0;           // softmax with class_of: the number of classes (labels); else = classes
  const uint8_t* class_drop = nullptr;  // softmax, CPU only: [labels] HOST flags (1 = probability 0)
  int32_t* labels = nullptr;            // [out_height, out_width]
  float* scores = nullptr;              // [out_height, out_width] winning merged value (NaN if NaN won)
  // CUDA, sigmoid path: the kernel of this call, an index of kSegmentWindowsKernels; -1: the process-wide one
  // (segment_windows_testing::set_variant, kSegmentWindowsKernels[0] unless a test or checks/postprocess_variants.py
  // set another). A prepared plan names its own (the device pipeline's choice, per pipeline: nothing another caller
  // sets changes it). Every kernel gives the CPU op's results up to fp32 rounding; the CPU path ignores it.
  int32_t kernel = -1;
  // CUDA, the `ordered_prebound` kernel only: device scratch of segment_windows_scratch_floats(params, kernel) floats
  // (its first launch's per-block bounds; a prepared plan allocates it once, an op call per call). Another kernel,
  // or the CPU path, ignores it; that kernel without it (or with fewer floats) is refused (cudaErrorInvalidValue).
  float* scratch = nullptr;
  int64_t scratch_floats = 0;
};

// The sigmoid path's CUDA kernel candidates by name, in the order of segment_windows_testing::Variant (csrc/cuda/
// segment_windows_testing.cuh): SegmentWindowsParams::kernel indexes this list; the first is the default.
inline constexpr const char* kSegmentWindowsKernels[] = {"tiled", "columns", "columns_chain",
                                                         "warps", "ordered", "ordered_prebound"};
inline constexpr int kSegmentWindowsKernelCount = 6;
// `ordered_prebound` (csrc/cuda/segment_windows_prebound.cuh): `ordered` whose tiles read their class bounds from a
// first launch's per-block minima and maxima of the logits (2 floats per logit) instead of their whole footprint.
inline constexpr int kSegmentWindowsPreboundKernel = 5;

// The floats of SegmentWindowsParams::scratch a CUDA launch of `params` with `kernel` (an index of
// kSegmentWindowsKernels; -1: none known) needs: 2 per logit for ordered_prebound on the sigmoid path, else 0.
inline int64_t segment_windows_scratch_floats(const SegmentWindowsParams& params, int32_t kernel) {
  if (kernel != kSegmentWindowsPreboundKernel || !params.apply_sigmoid || params.softmax) return 0;
  return 2 * params.num_windows * params.classes * params.in_height * params.in_width;
}

// CPU (OpenMP over output rows). Returns false when some rescaled pixel is covered by no window (outputs are
// then unspecified); the caller validates the windows first, so this is a second line of defence.
bool segment_windows_cpu(const SegmentWindowsParams& params);
// CUDA: logits/class_bias/labels/scores are device pointers; windows is host memory copied into the launch.
CudaStatus segment_windows_cuda(const SegmentWindowsParams& params, Stream stream);

}  // namespace zsseg
