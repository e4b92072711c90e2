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
    ],
)
def test_a_kinds_flag_says_its_rows_words(command, flag, row, before):
    assert _help_of(command, flag) == flag_help(row, before=before)


def test_a_kind_without_a_flag_of_its_own_is_refused_in_one_line():
    with pytest.raises(KeyError, match="no output kind 'video' with a flag of its own"):
        flag_help("video")
