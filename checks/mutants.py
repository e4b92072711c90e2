"""A mutation sample of the features that came with issues 62 and 64: each mutant is a one-line change of the source
that the tests named beside it must catch (fail). A mutant that survives is a behaviour no test protects.

Usage (from the repository root, the development venv):
    python -m checks mutants                 # every Python mutant: applied, its tests run, restored
    python -m checks mutants --list          # the table
    python -m checks mutants --only ID ...   # some of them
    python -m checks mutants --native        # also the native ones (each rebuilds the emulated module: minutes)

A mutant is applied in place (the editable install imports the checkout) and always restored: the original is
kept under .mutants/ first, restored on any exit (an exception, Ctrl-C, SIGTERM), and a later run restores what a
killed run left there before it starts. Its tests run in a subprocess (``pytest -x -q -n 0``); the mutant is
killed when they fail (exit 1), survives when they pass (exit 0), and the run is an error when they cannot run
(exit 2..5: an interrupted or broken collection proves nothing). Exit code: 0 when every mutant was killed, 1 when
one survived, 2 for an error. Native mutants rebuild ``zsseg_rt._C_emulated`` (tools/build_emulated.sh) and run their
tests on the emulated CUDA runtime; the module is rebuilt from the restored source at the end.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

REPO = Path(__file__).resolve().parent.parent
BACKUP = REPO / ".mutants"


@dataclass(frozen=True)
class Mutant:
    id: str
    path: str  # relative to the repository
    old: str  # must occur exactly once in the file
    new: str
    tests: Tuple[str, ...]
    native: bool = False  # csrc/: needs the emulated module rebuilt, its tests run on the emulated runtime


MUTANTS: Tuple[Mutant, ...] = (
    Mutant("loopback-prefix", "zsseg_rt/outputs/loopback.py", "    return name in LOOPBACK_HOSTS",
           "    return any(host.startswith(n) for n in LOOPBACK_HOSTS)", ("python_tests/stream/test_loopback.py",)),
    Mutant("loopback-missing-host", "zsseg_rt/outputs/loopback.py", "    if bound_host not in LOOPBACK_HOSTS:",
           "    if bound_host not in LOOPBACK_HOSTS or not host_header:", ("python_tests/stream/test_loopback.py",)),
    Mutant("progress-default-action", "zsseg_rt/console/progress.py", "                signal.raise_signal(first)",
           "                pass", ("python_tests/test_progress.py",)),
    Mutant("fake-cuda-1d", "python_tests/fake_cuda.py", "        if check and value.dim() > 0:",
           "        if check and value.dim() > 1:", ("python_tests/test_fake_cuda.py",)),
    Mutant("serve-without-ray", "zsseg_rt/cli/__init__.py",
           '        "serve a bundle over HTTP on Ray Serve (request batching, metrics)",\n        (RAY,),',
           '        "serve a bundle over HTTP on Ray Serve (request batching, metrics)",\n        (),',
           ("python_tests/cli/test_cli_commands.py",)),
    Mutant("junit-error-ignored", "checks/gpu_check_support.py",
           '        bad = case.find("failure") if case.find("failure") is not None else case.find("error")',
           '        bad = case.find("failure")', ("python_tests/test_gpu_evidence.py",)),
    Mutant("filters-ignored", "checks/gpu_record.py", '            found += [f"pytest {f}" for f in pytest_filters(value)]',
           "            pass", ("python_tests/test_gpu_evidence.py",)),
    Mutant("post-plan-not-launched", "zsseg_rt/runtime/device/postprocess_plans.py", "        plan.launch(stream)\n",
           "", ("python_tests/runtime/test_tensorrt_device_path.py",)),
    Mutant("post-plan-kept-across-vocabularies", "zsseg_rt/runtime/device/postprocess_plans.py",
           "        if bias_address != self._bias_address:", "        if self._bias_address is None:",
           ("python_tests/runtime/test_tensorrt_device_path.py",)),
    Mutant("metrics-not-the-written-maps", "zsseg_rt/stream/video_filter/video_metrics.py",
           "                changed(previous[1], labels),", "                changed(previous[1], previous[1]),",
           ("python_tests/cli/test_cli_camera_video.py::test_camera_writes_labels_and_video_metrics",)),
    Mutant("event-pool-off", "csrc/cuda/stream_order.h", "    if (ZS_LIBRARY_EVENT_POOL() && device >= 0 && device < kMaxDevices) {\n      std::lock_guard<std::mutex> lock(mutex_);\n      if (!free_[device].empty()) {",
           "    if (false) {\n      std::lock_guard<std::mutex> lock(mutex_);\n      if (!free_[device].empty()) {",
           ("python_tests/runtime/test_frame_api_calls.py::test_a_warm_frame_allocates_nothing_creates_no_event_and_synchronises_once",),
           native=True),
    Mutant("plan-owners-dropped", "csrc/bindings/segment_windows.cpp",
           "    if (marked_) keep_until_marker(std::move(owners_), marker_, last_stream_);", "    (void)marked_;",
           ("python_tests/ops/test_segment_windows_plan.py",), native=True),
    # issue 64 item 2: signals at every phase of a start-up (zsseg_rt.console.signal_phases; the Ray sweep: scale/)
    Mutant("held-signal-raised-inside", "zsseg_rt/console/signal_phases.py", "        caught.append(signum)\n",
           "        caught.append(signum)\n        raise KeyboardInterrupt\n",
           ("python_tests/test_signal_phases.py::test_a_held_signal_raises_nothing_in_the_block_and_interrupts_right_after",)),
    Mutant("ray-handler-let-in", "zsseg_rt/console/signal_phases.py", "            return hold\n",
           "            return _set_handler(signum, handler)\n",
           ("python_tests/test_signal_phases.py::test_handlers_set_in_the_block_are_kept_out_and_the_commands_set_again",)),
    Mutant("handlers-not-set-again", "zsseg_rt/console/signal_phases.py",
           "        for signum, handler in previous.items():\n            _set_handler(signum, handler)",
           "        for signum, handler in previous.items():\n            pass",
           ("python_tests/test_signal_phases.py::test_a_native_handler_set_in_the_block_is_replaced_after_it",)),
    Mutant("sigterm-read-as-sigint", "zsseg_rt/console/errors.py",
           "        signum = _received[0] if _received else signal.SIGINT", "        signum = signal.SIGINT",
           ("python_tests/test_signal_phases.py::test_a_sigterm_that_ray_reraises_as_a_plain_keyboard_interrupt_still_exits_143",)),
    Mutant("serve-stop-not-an-interrupt", "zsseg_rt/cli/serve.py", "    interrupt_handler(signum, frame)\n",
           "    raise SystemExit(signum)\n",
           ("python_tests/test_signal_phases.py::test_serve_stops_on_a_keyboard_interrupt_and_ignores_further_signals",)),
    # issue 75 item 8: the survivors of the audit of 0707000 (M01-M12; M09 near-equivalent, left out), each killed by
    # the assertion it lacked (python_tests/test_audit_0707000.py), and the new rules of issue 75
    Mutant("user-edit-taken-for-ours", "zsseg_rt/outputs/staged.py",
           "or recorded.get(name) != os.path.getsize(path):", "or name not in recorded:",
           ("python_tests/test_audit_0707000.py::test_a_label_map_a_user_changed_since_is_refused_even_with_overwrite",)),
    Mutant("serve-overrides-sig-ign", "zsseg_rt/cli/serve.py",
           "        if signal.getsignal(sig) != signal.SIG_IGN  # an ignored Ctrl-C (nohup) stays ignored\n", "",
           ("python_tests/test_audit_0707000.py::test_serve_keeps_an_ignored_sigint_ignored",)),
    Mutant("serve-bound-plus-one", "zsseg_rt/scale/serve.py", "if self.in_flight >= self.in_flight_limit:",
           "if self.in_flight > self.in_flight_limit:",
           ("python_tests/scale/test_serve_counters.py::test_more_requests_than_the_bound_get_503_with_retry_after_at_once",)),
    Mutant("preparation-cost-4x", "zsseg_rt/runtime/backends/table.py", '(("int8", (1.2, 0.19, 0.28, 250.0, 4.9))',
           '(("int8", (1.2, 0.76, 0.28, 250.0, 4.9))',
           ("python_tests/test_audit_0707000.py::test_the_announced_cost_is_near_the_measured_six_minutes",)),
    Mutant("gate-reference-not-shared", "zsseg_rt/prepare/auto.py",
           "        with shared_reference():  # the paths' gates share", "        with contextlib.nullcontext():  #",
           ("python_tests/test_audit_0707000.py::test_a_preparations_gates_share_one_reference",)),
    Mutant("scene-cut-by-composed-flow", "zsseg_rt/stream/video_filter/temporal.py",
           "if motion.step_confidence < options.cut_confidence:", "if motion.confidence < options.cut_confidence:",
           ("python_tests/test_audit_0707000.py::test_a_slow_pan_that_loses_the_anchor_is_no_scene_cut",)),
    Mutant("close-keeps-streams", "zsseg_rt/stream/video_filter/video.py", "            self._streams.clear()\n", "            pass\n",
           ("python_tests/test_audit_0707000.py::test_a_closed_video_segmenter_starts_each_stream_afresh",)),
    Mutant("plan-total-before-skips", "checks/gpu_plan.py", 'plan = [tuple(call["stages"]) for call in calls]',
           "plan = [tuple(command) for command in PLAN]",
           ("python_tests/test_audit_0707000.py::test_the_gpu_plans_header_counts_only_the_stages_it_runs",)),
    Mutant("reopen-loses-threads", "zsseg_rt/runtime/backends/select.py",
           "            return _cpu_auto(meta, roles, adapter, values)",
           "            return _cpu_auto(meta, roles, adapter, values.replace(threads=0))",
           ("python_tests/test_audit_0707000.py::test_the_upgraded_path_opens_with_the_engines_threads",)),
    Mutant("switch-loses-max-batch", "zsseg_rt/runtime/pipelines/windowed.py",
           "device = make_device_pipeline(self.meta, backend, self.options, max_windows=self.max_batch,",
           "device = make_device_pipeline(self.meta, backend, self.options, max_windows=4,",
           ("python_tests/test_audit_0707000.py::test_a_switched_backend_keeps_the_max_batch",)),
    Mutant("output-not-claimed", "zsseg_rt/outputs/plan.py", "        self.claim(say)\n", "",
           ("python_tests/test_output_owner.py",)),
    Mutant("class-map-after-the-maps", "zsseg_rt/outputs/views.py", "        self.record.write()\n", "        pass\n",
           ("python_tests/cli/test_cli_segment_inputs.py::test_a_stopped_run_keeps_the_class_map_of_its_label_maps",)),
    Mutant("glob-follows-loops", "zsseg_rt/input_files.py", "if key is None or key in seen:", "if key is None:",
           ("python_tests/cli/test_cli_segment_inputs.py::test_a_glob_without_a_loop_matches_as_glob_does",
            "python_tests/cli/test_cli_segment_inputs.py::test_zsseg_batchs_glob_through_a_symlink_loop_ends")),
    # issue 79 item 2: the survivors of the audit of b235fde (P04, P09, P11; M06 above, its test now fakes the CPU),
    # each killed by the assertion it lacked (python_tests/test_audit_b235fde.py), and a sample of this wave's code
    # (docs/development.md, "Mutation sample")
    Mutant("worker-typo-from-every-option", "zsseg_rt/options/table.py", "hint = did_you_mean(name, known) or",
           "hint = did_you_mean(name, self.names()) or",
           ("python_tests/test_audit_b235fde.py::test_a_workers_typo_is_matched_against_the_workers_options_only",)),
    Mutant("coco-bbox-y-x", "zsseg_rt/runtime/coco.py",
           "                        int(columns[0]),\n                        int(rows[0]),\n",
           "                        int(rows[0]),\n                        int(columns[0]),\n",
           ("python_tests/test_audit_b235fde.py::test_coco_boxes_of_regions_away_from_the_corner_are_x_y_width_height",)),
    Mutant("peak-without-per-mb", "zsseg_rt/runtime/preparation_cost.py", "        peak_fixed + peak_per_mb * size,\n",
           "        peak_fixed,\n",
           ("python_tests/test_audit_b235fde.py::test_the_preparations_peak_memory_grows_per_mb_of_encoder_and_decides_the_fit",)),
    Mutant("postprocess-slowest-kept", "zsseg_rt/runtime/device/postprocess_choice.py", "best = min(us, key=",
           "best = max(us, key=", ("python_tests/runtime/test_postprocess_choice.py",)),
    Mutant("postprocess-labels-unchecked", "zsseg_rt/runtime/device/postprocess_choice.py", "    if equal < LABELS_MIN:",
           "    if equal < 0.5:",
           ("python_tests/runtime/test_postprocess_choice.py::test_a_candidate_with_a_few_other_labels_fails_the_check_at_the_bound",)),
    Mutant("postprocess-chosen-in-capture", "zsseg_rt/runtime/device/postprocess_choice.py",
           'elif getattr(memory, "capturing", False):', "elif False:",
           ("python_tests/runtime/test_postprocess_choice.py",)),
    Mutant("postprocess-pinned-timed", "zsseg_rt/runtime/device/postprocess_choice.py",
           "                if self.setting != AUTO:", "                if False:",
           ("python_tests/runtime/test_postprocess_choice.py",)),
    Mutant("postprocess-geometries-unbounded", "zsseg_rt/runtime/device/postprocess_choice.py",
           "while len(self._chosen) > KEPT:", "while len(self._chosen) > KEPT + 1:",
           ("python_tests/runtime/test_postprocess_choice.py::test_the_choices_of_the_latest_geometries_are_kept",)),
    Mutant("unknown-name-case-sensitive", "zsseg_rt/runtime/result.py",
           "if name_key(str(label)) == UNKNOWN_NAME:", "if str(label) == UNKNOWN_NAME:",
           ("python_tests/runtime/test_unknown_label.py::test_the_reserved_name_is_refused_whatever_its_case",)),
    Mutant("serve-no-check-before-batch", "zsseg_rt/scale/serve.py",
           "            check_unknown_name(parsed.labels, self.engine.options.unknown_below)", "            pass",
           ("python_tests/scale/test_serve_vocabularies.py",)),
    Mutant("serve-refused-vocabulary-runs-on", "zsseg_rt/scale/serve.py",
           "                    answers[i] = refusal\n                continue\n",
           "                    answers[i] = refusal\n                pass\n",
           ("python_tests/scale/test_serve_vocabularies.py",)),
    Mutant("serve-answer-not-checked", "zsseg_rt/scale/serve.py", "if tuple(result.class_names) == asked:", "if True:",
           ("python_tests/scale/test_serve_vocabularies.py",)),
    # the batch rows' code is the one record of what a label value means since issue 88 item 3 (outputs/meaning.py)
    Mutant("batch-threshold-not-compared", "zsseg_rt/outputs/meaning.py", "        if made[0] != now[0] or threshold:",
           "        if made[0] != now[0]:",
           ("python_tests/scale/test_batch_plan.py::test_a_resume_that_would_mix_label_meanings_is_refused",
            "python_tests/outputs/test_meaning.py::test_each_difference_is_listed_with_both_values")),
    Mutant("batch-bundle-not-compared", "zsseg_rt/outputs/meaning.py",
           "        if recorded and given.bundle_digest is not None and self.bundle_digest != given.bundle_digest:",
           "        if False:",
           ("python_tests/scale/test_batch_plan.py::test_a_resume_that_would_mix_label_meanings_is_refused",
            "python_tests/cli/test_cli_segment.py::test_overwrite_with_another_bundle_and_the_same_classes_is_refused")),
    Mutant("batch-no-resume-not-refused", "zsseg_rt/scale/batch.py",
           "        return sorted(labels_name(key) for key in _done_keys(read_manifest(output_dir), output_dir))",
           "        return sorted(labels_name(key) for key in _done_keys(read_manifest(output_dir), output_dir)) if resume "
           "else []",
           ("python_tests/scale/test_batch_plan.py::test_a_resume_that_would_mix_label_meanings_is_refused",)),
    Mutant("frames-in-decode-order", "zsseg_rt/stream/sources/base.py",
           "            number = int(round((pts - start) * self.number_rate))",
           "            number = (-1 if self.last_number is None else self.last_number) + 1",
           ("python_tests/stream/test_frame_numbers.py",)),
    Mutant("frame-gap-unsaid", "zsseg_rt/stream/sources/base.py", "            self._skipped(range(last + 1, number))",
           "            pass", ("python_tests/stream/test_frame_numbers.py",)),
    Mutant("frames-share-a-number", "zsseg_rt/stream/sources/base.py", "        if number <= last:\n",
           "        if number < last:\n", ("python_tests/stream/test_frame_number_rounding.py",)),
    Mutant("harness-takes-any-image-version", "checks/_harness.py",
           "if have is not None and all(s.contains(have, prereleases=True) for s in specs):", "if have is not None:",
           ("python_tests/test_gpu_harness.py::test_an_image_version_the_harness_refuses_is_replaced_by_the_carried_one",)),
    Mutant("harness-import-unchecked", "checks/_harness.py",
           "if run.returncode != 0 or not os.path.realpath(where).startswith(os.path.realpath(site) + os.sep):",
           "if run.returncode != 0:",
           ("python_tests/test_gpu_harness.py::test_a_harness_imported_from_elsewhere_than_its_site_is_refused",)),
    # issue 88 item 5: the audit of 7f842ed's survivor (N13) and its weakly guarded mutant (N12), each killed by an
    # assertion now (python_tests/runtime/test_option_values.py)
    Mutant("cuda-n-prefix-match", "zsseg_rt/options/table.py", "re.fullmatch(self.pattern[0], value)",
           "re.match(self.pattern[0], value)",
           ("python_tests/runtime/test_option_values.py::test_every_value_is_checked_by_its_row_before_anything_is_opened",)),
    Mutant("range-low-end-refused", "zsseg_rt/options/table.py", "low <= float(value) <= high",
           "low < float(value) <= high",
           ("python_tests/runtime/test_option_values.py::test_values_the_rows_take_pass",)),
)  # fmt: skip


def restore_leftovers() -> List[str]:
    """Put back what a killed run left mutated (the originals under .mutants/); returns the files restored."""
    restored = []
    if BACKUP.is_dir():
        for saved in sorted(p for p in BACKUP.rglob("*") if p.is_file()):
            target = REPO / saved.relative_to(BACKUP)
            shutil.copyfile(saved, target)
            restored.append(str(target.relative_to(REPO)))
        shutil.rmtree(BACKUP)
    return restored


def _test_env(native: bool) -> dict:
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    if native:
        preload = subprocess.run(["bash", str(REPO / "tools" / "build_emulated.sh"), "--preload"], capture_output=True,
                                 text=True, check=True).stdout.strip()  # fmt: skip
        env.update(ZSSEG_CUDA_EMULATION="1", LD_PRELOAD=preload, ASAN_OPTIONS="detect_leaks=0")
    return env


def _build_emulated() -> None:
    subprocess.run(["bash", str(REPO / "tools" / "build_emulated.sh")], cwd=REPO, check=True, capture_output=True)


def run_one(mutant: Mutant) -> Tuple[str, str]:
    """Apply, test, restore: ("killed" | "survived" | "error", a line saying how)."""
    path = REPO / mutant.path
    text = path.read_text(encoding="utf-8")
    if text.count(mutant.old) != 1:
        return "error", f"the mutant's line occurs {text.count(mutant.old)} times in {mutant.path} (expected once)"
    saved = BACKUP / mutant.path
    saved.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, saved)
    try:
        path.write_text(text.replace(mutant.old, mutant.new), encoding="utf-8")
        if mutant.native:
            _build_emulated()
        command = [sys.executable, "-m", "pytest", *mutant.tests, "-x", "-q", "-n", "0", "-p", "no:cacheprovider"]
        run = subprocess.run(command, cwd=REPO, env=_test_env(mutant.native), capture_output=True, text=True)
    finally:
        shutil.copyfile(saved, path)
        saved.unlink()
    tail = (run.stdout.strip().splitlines() or [""])[-1]
    if run.returncode == 1:
        return "killed", tail
    if run.returncode == 0:
        return "survived", tail
    return "error", f"pytest exit {run.returncode}: {tail}"


def _interrupted(signum, _frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", metavar="ID", help="run these mutants only")
    parser.add_argument("--native", action="store_true", help="also the native mutants (rebuild the emulated module)")
    parser.add_argument("--list", action="store_true", help="print the table and stop")
    args = parser.parse_args(argv)
    known = {m.id for m in MUTANTS}
    unknown = sorted(set(args.only or ()) - known)
    if unknown:
        parser.error(f"unknown mutant {unknown[0]!r}; known: {', '.join(sorted(known))}")
    chosen = [m for m in MUTANTS if (not args.only or m.id in args.only) and (args.native or not m.native or args.only)]
    if args.list:
        for m in MUTANTS:
            print(f"{m.id}\t{m.path}\t{'native' if m.native else 'python'}\t{' '.join(m.tests)}")
        return 0
    for name in restore_leftovers():
        print(f"restored {name}, left mutated by an interrupted run")
    signal.signal(signal.SIGTERM, _interrupted)  # the finally clauses restore on SIGTERM too
    verdicts = []
    try:
        for mutant in chosen:
            verdict, how = run_one(mutant)
            verdicts.append(verdict)
            print(f"{mutant.id}: {verdict.upper()} ({how})", flush=True)
    finally:
        if any(m.native for m in chosen):
            _build_emulated()  # the module of the restored source
    print(f"{verdicts.count('killed')} of {len(verdicts)} mutants killed")
    return 2 if "error" in verdicts else (1 if "survived" in verdicts else 0)


if __name__ == "__main__":
    sys.exit(main())
