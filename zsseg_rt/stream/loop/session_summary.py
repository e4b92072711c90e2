"""The closing lines of a :class:`~zsseg_rt.stream.loop.session.Session` (``zsseg camera``'s): each source's counters and
the total, damaged packets skipped, frames missing, and the device pipeline's post-processing kernel."""

from __future__ import annotations

import logging

__all__ = ["damage_note", "kernel_line", "log_summary"]

log = logging.getLogger("zsseg_rt.stream.summary")  # (zsseg segment says its own closing lines instead)


def log_summary(runner, summary: dict, failed: int) -> None:
    """The closing lines: one source's counters, or each source's and the total."""
    if len(summary["sources"]) == 1:
        stats = runner.stats
        log.log(
            logging.WARNING if stats.decode_errors or summary["sources"][0].get("frames_missing") else logging.INFO,
            "stopped: %d frames processed, %d captured, %d dropped, %d reconnects, %.1f FPS%s",
            stats.processed,
            stats.captured,
            stats.dropped,
            stats.reconnects,
            stats.fps,
            damage_note(summary["sources"][0]),
        )
        return
    for entry in summary["sources"]:
        log.log(
            logging.ERROR if entry["state"] == "failed" else logging.INFO,
            "%s: %s, %d frames processed, %d captured, %d dropped, %d reconnects, %.1f FPS, latency p50 %.0f ms "
            "p99 %.0f ms%s%s",
            entry["name"],
            entry["state"],
            entry["processed"],
            entry["captured"],
            entry["dropped"],
            entry["reconnects"],
            entry["fps"],
            entry["latency_p50_ms"],
            entry["latency_p99_ms"],
            damage_note(entry),
            f" ({entry['error']})" if entry["error"] else "",
        )
    log.info(
        "stopped: %d sources (%d failed), %d frames processed in %d engine calls (%.2f frames a call)",
        len(summary["sources"]),
        failed,
        summary["processed"],
        summary["engine_calls"],
        summary["mean_batch"],
    )


def kernel_line(report) -> str:
    """ "post-processing kernel: columns at C=3 480x640 (timed: tiled 80.1 us, ...)" of the summary, or "" (none)."""
    from zsseg_rt.runtime.device.postprocess_choice import describe

    return describe(report)


def damage_note(entry: dict) -> str:
    """ ", 4 damaged packets skipped (296 of the 300 frames the file declares); 4 frames missing by presentation time
    (...)" for a source's stats, else ""."""
    from zsseg_rt.stream.sources import missing_note

    missing = missing_note(entry.get("frames_missing", 0), entry.get("missing_frames", []))
    missing = f"; {missing}" if missing else ""
    if not entry.get("decode_errors"):
        return missing
    declared = entry.get("frames_declared")
    ended = declared and entry.get("state") == "ended"
    of = f" ({entry['captured']} of the {declared} frames the file declares)" if ended else ""
    return f", {entry['decode_errors']} damaged packets or images skipped{of}{missing}"
