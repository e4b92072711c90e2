"""The help of a kind's own option (``--labels-out``, ``--save-json``) is its row's (``OutputKind.help``,
``flag_help``), on every command that takes the kind (issue 80 item 2: the flags generated from the rows)."""

from __future__ import annotations

import pytest

from zsseg_rt import cli
from zsseg_rt.outputs.kinds import flag_help


def _help_of(command, flag):
    parser = cli.build_parser(command)
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction").choices[command]
    return next(a.help for a in sub._actions if flag in a.option_strings)


@pytest.mark.parametrize(
    "command, flag, row, before",
    [
        ("camera", "--labels-out", "labels", ""),
        ("camera", "--save-json", "coco", "(video files and image folders) "),
        ("segment", "--save-json", "coco", ""),
        ("camera", "--stats-json", "stats", ""),
        ("camera", "--preview", "preview", ""),
    ],
)
def test_a_kinds_flag_says_its_rows_words(command, flag, row, before):
    assert _help_of(command, flag) == flag_help(row, before=before)


def test_a_kind_without_a_flag_of_its_own_is_refused_in_one_line():
    with pytest.raises(KeyError, match="no output kind 'video' with a flag of its own"):
        flag_help("video")


def test_every_run_option_that_writes_or_serves_an_output_is_a_row_of_the_kinds():
    """The run's outputs are the kinds' rows (issue 88 item 3: --stats-json and --preview were not): each run option
    that names a file the run writes, or the preview page, names the row whose own option is its flag; a Session plans
    and opens it by that row (RunOutputs._declare, session_sinks' open_output)."""
    from zsseg_rt.options.run_rows import RUN_OPTIONS
    from zsseg_rt.outputs.kinds import output_kind_named

    outputs = [
        row for row in RUN_OPTIONS if (row.writes and row.name != "outputs") or row.name == "preview"
    ]  # -o: kinds
    assert {row.name for row in outputs} >= {"labels_out", "save_json", "tracks_out", "stats_json", "preview"}
    for row in outputs:
        kind = output_kind_named(row.output_kind)
        assert kind is not None and kind.option == row.flag, (row.name, row.output_kind)


def test_the_stats_row_has_no_frame_sink_and_the_preview_row_opens_the_page():
    from zsseg_rt.outputs.kinds import SinkOptions, open_output, output_kind
    from zsseg_rt.outputs.sink_base import SinkError

    assert output_kind("run.json", "--stats-json").name == "stats"
    with pytest.raises(SinkError, match="--stats-json 'run.json' has no frame sink: the run writes it itself"):
        open_output("run.json", SinkOptions(), "--stats-json")
    with pytest.raises(SinkError, match="--preview takes a port .*got '70000'"):
        open_output("70000", SinkOptions(), "--preview")
    page = open_output("0", SinkOptions(sources=["a", "b"], values={"readonly": True}), "--preview")
    try:
        assert page.output_kind == "preview" and type(page).__name__ == "MjpegSink"
    finally:
        page.abort()
