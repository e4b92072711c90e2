// Bindings of the video filter's ops (zsseg/temporal.h): validation here, once, then the CPU or CUDA launcher.
#include <string>
#include <vector>

#include "array_args.h"
#include "registry.h"
#include "resize_args.h"
#include "window_args.h"
#include "zsseg/temporal.h"

namespace zsseg_py {
namespace {

ArrayArg float32(const ArgParser& args, const char* name, py::handle obj) {
  ArrayArg a = args.array(name, obj);
  if (a.type != ElemType::Float32) args.fail_type("argument '" + a.name + "' must be float32, got " + a.type_name);
  return a;
}

ArrayArg int32(const ArgParser& args, const char* name, py::handle obj) {
  if (obj.is_none()) args.fail_type(std::string("argument '") + name + "' must be an int32 array, got None");
  return *args.optional_int32_array(name, obj);
}

void require_shape(const ArgParser& args, const ArrayArg& a, const std::vector<std::int64_t>& shape,
                   const std::string& what) {
  if (a.shape != shape) args.fail_shape(a, tuple_str(shape) + " (" + what + ")");
}

py::tuple temporal_blend(py::handle current_obj, py::handle previous_obj, py::handle previous_jitter_obj,
                         py::handle doubt_obj, py::handle valid_obj, double blend, double hold_doubt,
                         py::handle out_obj, std::int64_t stream) {
  ArgParser args("temporal_blend", stream);
  const ArrayArg current = float32(args, "current", current_obj);  // [C, h, w]
  if (current.ndim() != 3) args.fail_shape(current, "[C, h, w] (3 dimensions)");
  const std::int64_t c = current.dim(0), h = current.dim(1), w = current.dim(2);
  const ArrayArg previous = float32(args, "previous", previous_obj);
  require_shape(args, previous, current.shape, "the shape of 'current'");
  const ArrayArg jitter = float32(args, "previous_jitter", previous_jitter_obj);
  require_shape(args, jitter, {h, w}, "[h, w] of 'current'");
  const ArrayArg doubt = float32(args, "doubt", doubt_obj);
  require_shape(args, doubt, {h, w}, "[h, w] of 'current'");
  const ArrayArg valid = args.uint8_array("valid", valid_obj);
  require_shape(args, valid, {h, w}, "[h, w] of 'current'");
  if (!(blend > 0.0 && blend <= 1.0)) args.fail_value("blend must be in (0, 1], got " + std::to_string(blend));
  if (!(hold_doubt >= 0.0 && hold_doubt < 1.0)) {
    args.fail_value("hold_doubt must be in [0, 1), got " + std::to_string(hold_doubt));
  }
  const Placement where = args.placement({&current, &previous, &jitter, &doubt, &valid});
  py::object outs[4] = {py::none(), py::none(), py::none(), py::none()};
  if (!out_obj.is_none()) {
    const py::tuple items = sequence_items(out_obj);
    if (items.size() != 4)
      args.fail_type("out must be (state, jitter, noise, measured), got " + std::to_string(items.size()) + " entries");
    for (std::size_t i = 0; i < 4; ++i) outs[i] = items[i];
  }
  const std::initializer_list<const ArrayArg*> inputs{&current, &previous, &jitter, &doubt, &valid};
  Output state = args.output_or("state", "out[0]", outs[0], {c, h, w}, ElemType::Float32, where, inputs);
  Output next = args.output_or("jitter", "out[1]", outs[1], {h, w}, ElemType::Float32, where, inputs);
  Output noise = args.output_or("noise", "out[2]", outs[2], {h, w}, ElemType::Float32, where, inputs);
  Output measured = args.output_or("measured", "out[3]", outs[3], {1}, ElemType::Int32, where, inputs);
  args.require_disjoint(state, "out[0]", next, "out[1]");
  args.require_disjoint(state, "out[0]", noise, "out[2]");
  args.require_disjoint(next, "out[1]", noise, "out[2]");
  zsseg::TemporalBlendParams p;
  p.current = current.ptr<float>();
  p.previous = previous.ptr<float>();
  p.previous_jitter = jitter.ptr<float>();
  p.doubt = doubt.ptr<float>();
  p.valid = valid.ptr<std::uint8_t>();
  p.classes = c, p.height = h, p.width = w;
  p.blend = static_cast<float>(blend);
  p.rest = static_cast<float>(1.0 - blend);
  p.hold_span = static_cast<float>(1.0 - hold_doubt);
  p.state = state.ptr<float>(), p.jitter = next.ptr<float>(), p.noise = noise.ptr<float>();
  p.measured = measured.ptr<std::int32_t>();
  run_on_placement(args, where, p, &zsseg::temporal_blend_cuda, &zsseg::temporal_blend_cpu);
  return py::make_tuple(state.array, next.array, noise.array, measured.array);
}

void temporal_hold(py::handle labels_obj, py::handle scores_obj, py::handle state_obj, py::handle noise_obj,
                   py::handle anchor_labels_obj, py::handle flow_obj, py::handle valid_obj, py::handle measured_obj,
                   double hysteresis, std::int64_t stream) {
  ArgParser args("temporal_hold", stream);
  const ArrayArg state = float32(args, "state", state_obj);  // [C, h, w]
  if (state.ndim() != 3) args.fail_shape(state, "[C, h, w] (3 dimensions)");
  const ArrayArg noise = float32(args, "noise", noise_obj);
  require_shape(args, noise, {state.dim(1), state.dim(2)}, "[h, w] of 'state'");
  const ArrayArg anchor = int32(args, "anchor_labels", anchor_labels_obj);  // [H, W]
  if (anchor.ndim() != 2) args.fail_shape(anchor, "[H, W] (2 dimensions)");
  const std::int64_t h = anchor.dim(0), w = anchor.dim(1);
  const ArrayArg flow = float32(args, "flow", flow_obj);
  require_shape(args, flow, {h, w, 2}, "[H, W, 2] of 'anchor_labels'");
  const ArrayArg valid = args.uint8_array("valid", valid_obj);
  require_shape(args, valid, {h, w}, "[H, W] of 'anchor_labels'");
  const std::optional<ArrayArg> measured = args.optional_int32_array("measured", measured_obj);
  if (measured) require_shape(args, *measured, {1}, "temporal_blend's flag");
  if (!(hysteresis >= 0.0)) args.fail_value("hysteresis must be >= 0, got " + std::to_string(hysteresis));
  const ArrayArg* flag = measured ? &*measured : nullptr;
  const Placement where = args.placement({&state, &noise, &anchor, &flow, &valid, flag});
  if (labels_obj.is_none() || scores_obj.is_none()) args.fail_type("labels and scores (changed in place) are required");
  const std::initializer_list<const ArrayArg*> inputs{&state, &noise, &anchor, &flow, &valid, flag};
  Output labels = args.output_or("labels", "labels", labels_obj, {h, w}, ElemType::Int32, where, inputs);
  Output scores = args.output_or("scores", "scores", scores_obj, {h, w}, ElemType::Float32, where, inputs);
  args.require_disjoint(labels, "labels", scores, "scores");
  zsseg::TemporalHoldParams p;
  p.labels = labels.ptr<std::int32_t>(), p.scores = scores.ptr<float>();
  p.state = state.ptr<float>(), p.noise = noise.ptr<float>();
  p.anchor_labels = anchor.ptr<std::int32_t>(), p.flow = flow.ptr<float>(), p.valid = valid.ptr<std::uint8_t>();
  p.measured = flag != nullptr ? flag->ptr<std::int32_t>() : nullptr;
  p.classes = state.dim(0), p.state_height = state.dim(1), p.state_width = state.dim(2), p.height = h, p.width = w;
  p.hysteresis = static_cast<float>(hysteresis);
  if (hysteresis > 0.0) run_on_placement(args, where, p, &zsseg::temporal_hold_cuda, &zsseg::temporal_hold_cpu);
}

py::tuple temporal_propagate(py::handle anchor_labels_obj, py::handle anchor_scores_obj, py::handle flow_obj,
                             py::handle fill_obj, py::handle rows_down_obj, py::handle cols_down_obj,
                             py::handle rows_up_obj, py::handle cols_up_obj, py::handle out_obj, std::int64_t stream) {
  ArgParser args("temporal_propagate", stream);
  const ArrayArg anchor = int32(args, "anchor_labels", anchor_labels_obj);  // [H, W]
  if (anchor.ndim() != 2) args.fail_shape(anchor, "[H, W] (2 dimensions)");
  const std::int64_t h = anchor.dim(0), w = anchor.dim(1);
  const ArrayArg scores_in = float32(args, "anchor_scores", anchor_scores_obj);
  require_shape(args, scores_in, {h, w}, "[H, W] of 'anchor_labels'");
  const ArrayArg flow = float32(args, "flow", flow_obj);
  require_shape(args, flow, {h, w, 2}, "[H, W, 2] of 'anchor_labels'");
  std::optional<ArrayArg> fill = args.optional_int32_array("fill", fill_obj), maps[4];
  const char* names[4] = {"rows_down", "cols_down", "rows_up", "cols_up"};
  py::handle objs[4] = {rows_down_obj, cols_down_obj, rows_up_obj, cols_up_obj};
  if (fill) {
    if (fill->ndim() != 2) args.fail_shape(*fill, "[h, w] (the flow's resolution)");
    const std::int64_t sizes[4] = {h, w, fill->dim(0), fill->dim(1)}, bounds[4] = {fill->dim(0), fill->dim(1), h, w};
    for (int i = 0; i < 4; ++i) {
      maps[i] = int32(args, names[i], objs[i]);
      require_shape(args, *maps[i], {sizes[i]}, "one index per row / column");
      if (!maps[i]->place.is_cuda()) {  // the indices are read by the kernel: checked here where they can be
        const std::int32_t* v = maps[i]->ptr<std::int32_t>();
        for (std::int64_t k = 0; k < sizes[i]; ++k) {
          if (v[k] < 0 || v[k] >= bounds[i]) args.fail_value(std::string(names[i]) + " holds an index out of range");
        }
      }
    }
    if (!fill->place.is_cuda()) {
      const std::int32_t* v = fill->ptr<std::int32_t>();
      for (std::int64_t k = 0; k < fill->numel(); ++k) {
        if (v[k] < -1 || v[k] >= fill->numel()) args.fail_value("fill holds an index out of range");
      }
    }
  }
  auto opt = [](const std::optional<ArrayArg>& a) { return a ? &*a : nullptr; };
  const Placement where =
      args.placement({&anchor, &scores_in, &flow, opt(fill), opt(maps[0]), opt(maps[1]), opt(maps[2]), opt(maps[3])});
  const auto outs = args.out_pair(out_obj, "labels", "scores");
  const std::initializer_list<const ArrayArg*> inputs{&anchor, &scores_in, &flow, opt(fill)};
  Output labels = args.output_or("labels", "out[0]", outs.first, {h, w}, ElemType::Int32, where, inputs);
  Output scores = args.output_or("scores", "out[1]", outs.second, {h, w}, ElemType::Float32, where, inputs);
  args.require_disjoint(labels, "out[0]", scores, "out[1]");
  zsseg::TemporalPropagateParams p;
  p.anchor_labels = anchor.ptr<std::int32_t>(), p.anchor_scores = scores_in.ptr<float>(), p.flow = flow.ptr<float>();
  if (fill) {
    p.fill = fill->ptr<std::int32_t>();
    p.rows_down = maps[0]->ptr<std::int32_t>(), p.cols_down = maps[1]->ptr<std::int32_t>();
    p.rows_up = maps[2]->ptr<std::int32_t>(), p.cols_up = maps[3]->ptr<std::int32_t>();
    p.fill_height = fill->dim(0), p.fill_width = fill->dim(1);
  }
  p.height = h, p.width = w;
  p.labels = labels.ptr<std::int32_t>(), p.scores = scores.ptr<float>();
  run_on_placement(args, where, p, &zsseg::temporal_propagate_cuda, &zsseg::temporal_propagate_cpu);
  return py::make_tuple(labels.array, scores.array);
}

py::object class_state(py::handle logits_obj, py::handle windows_obj, py::handle head_size, py::handle scaled_size,
                       py::handle state_size, py::handle class_bias_obj, bool apply_sigmoid, py::handle out_obj,
                       std::int64_t stream) {
  ArgParser args("class_state", stream);
  const ArrayArg logits = args.array("logits", logits_obj);  // [n, C, h, w]
  if (logits.ndim() != 4) args.fail_shape(logits, "[n_windows, C, h, w] (4 dimensions)");
  const std::optional<ArrayArg> bias = parse_class_bias(args, class_bias_obj, logits);
  const Placement where = args.placement({&logits, bias ? &*bias : nullptr});
  if (!where.is_cuda() && logits.type != ElemType::Float32) args.fail_type("logits on the CPU must be float32");
  const auto [head, scaled, size] = parse_window_sizes(args, head_size, scaled_size, state_size, "state_size");
  // a state larger than the rescaled image along either axis: cv::resize(INTER_AREA)'s linear coefficients, as the
  // host path (zsseg/temporal.h area_linear_span)
  const std::vector<zsseg::WindowPlacement> windows = parse_windows(args, windows_obj, scaled, head);
  if (static_cast<std::int64_t>(windows.size()) != logits.dim(0)) {
    args.fail_value("logits has " + std::to_string(logits.dim(0)) + " windows but " + std::to_string(windows.size()) +
                    " placements were given");
  }
  if (windows.size() > static_cast<std::size_t>(zsseg::kMaxStateWindows)) {
    args.fail_value("at most " + std::to_string(zsseg::kMaxStateWindows) + " windows, got " +
                    std::to_string(windows.size()));
  }
  if (!windows_cover(windows, scaled[0], scaled[1])) {
    args.fail_value("the windows do not cover the whole rescaled image " + tuple_str(scaled));
  }
  const std::int64_t c = logits.dim(1);
  Output state = args.output_or("state", "out", out_obj, {c, size[0], size[1]}, ElemType::Float32, where,
                                {&logits, bias ? &*bias : nullptr});
  zsseg::ClassStateParams p;
  p.logits = logits.data;
  if (where.is_cuda()) p.dtype = to_kernel_dtype(logits.type);
  p.num_windows = logits.dim(0), p.classes = c, p.in_height = logits.dim(2), p.in_width = logits.dim(3);
  p.windows = windows.data();
  p.head_height = head[0], p.head_width = head[1], p.scaled_height = scaled[0], p.scaled_width = scaled[1];
  p.state_height = size[0], p.state_width = size[1];
  p.class_bias = bias ? bias->ptr<float>() : nullptr;
  p.apply_sigmoid = apply_sigmoid;
  p.state = state.ptr<float>();
  run_on_placement(args, where, p, &zsseg::class_state_cuda, &zsseg::class_state_cpu);
  return state.array;
}

}  // namespace

void register_temporal(py::module_& m) {
  m.def("temporal_blend", &temporal_blend, py::arg("current"), py::arg("previous"), py::arg("previous_jitter"),
        py::arg("doubt"), py::arg("valid"), py::arg("blend"), py::arg("hold_doubt"), py::arg("out") = py::none(),
        py::arg("stream") = 0, "The video filter's blend of a keyframe; see zsseg_rt.ops.temporal_blend.");
  m.def("temporal_hold", &temporal_hold, py::arg("labels"), py::arg("scores"), py::arg("state"), py::arg("noise"),
        py::arg("anchor_labels"), py::arg("flow"), py::arg("valid"), py::arg("measured") = py::none(),
        py::arg("hysteresis"), py::arg("stream") = 0,
        "The video filter's hysteresis, in place; see zsseg_rt.ops.temporal_hold.");
  m.def("temporal_propagate", &temporal_propagate, py::arg("anchor_labels"), py::arg("anchor_scores"), py::arg("flow"),
        py::arg("fill") = py::none(), py::arg("rows_down") = py::none(), py::arg("cols_down") = py::none(),
        py::arg("rows_up") = py::none(), py::arg("cols_up") = py::none(), py::arg("out") = py::none(),
        py::arg("stream") = 0, "A frame between keyframes; see zsseg_rt.ops.temporal_propagate.");
  m.def("class_state", &class_state, py::arg("logits"), py::arg("windows"), py::arg("head_size"),
        py::arg("scaled_size"), py::arg("state_size"), py::arg("class_bias") = py::none(), py::arg("sigmoid") = true,
        py::arg("out") = py::none(), py::arg("stream") = 0,
        "Per-class scores at the state size of one frame's windows; see zsseg_rt.ops.class_state.");
}

}  // namespace zsseg_py
