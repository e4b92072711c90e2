"""A family's own evaluation options reach ``zsseg eval`` and ``evaluate()`` through its registration
(``Family.evaluation.arguments()``), as its export options reach ``zsseg export``: the generic evaluation names none."""

from __future__ import annotations

import argparse
from typing import Any, Sequence

import pytest

from zsseg_rt.cli.eval import add_command as add_eval_command
from zsseg_rt.cli.eval import family_evaluation_arguments
from zsseg_rt.contract import registry
from zsseg_rt.contract.family import Evaluation, FamilyArgument, ModelFamily
from zsseg_rt.eval.evaluate import evaluate


class _OwnProtocol(Evaluation):
    def arguments(self) -> Sequence[FamilyArgument]:
        return (FamilyArgument(("--zz-own-knob",), {"type": float, "default": None, "help": "(ZzTest) a knob"}),)

    def protocol_hooks(self) -> Any:
        raise AssertionError("not evaluated in these tests")


@pytest.fixture
def own_family():
    family = ModelFamily(
        evaluation_class=_OwnProtocol,
        name="zz_own_protocol",
        display_name="ZzTest",
        config_class="a:b",
        model_class="a:b",
        load_config="a:b",
        create="a:b",
    )
    with registry.FAMILIES.kept():
        registry.register_family(family)
        yield family


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="zsseg")
    add_eval_command(parser.add_subparsers(dest="command"))
    return parser


def test_every_family_option_is_a_flag_of_zsseg_eval(own_family):
    owners = {argument.dest: family.name for family, argument in family_evaluation_arguments()}
    assert owners["zz_own_knob"] == "zz_own_protocol"
    assert {"text_weights", "background_threshold", "thresholds"} <= set(owners)  # ZeroSeg's, from its family
    args = _parser().parse_args(["eval", "ckpt", "--zz-own-knob", "0.5"])
    assert args.zz_own_knob == 0.5 and args.thresholds == "paper"


def test_ray_refuses_a_family_option_by_its_family(own_family, tmp_path):
    args = _parser().parse_args(["eval", str(tmp_path), "--dataset", "synthetic", "--ray", "--zz-own-knob", "1"])
    with pytest.raises(SystemExit, match=r"--zz-own-knob \(ZzTest's own protocol\) cannot run with --ray"):
        args.func(args)


def test_evaluate_refuses_a_keyword_no_family_declares():
    with pytest.raises(
        TypeError, match=r"unexpected keyword argument\(s\) 'background_treshold'.*background_threshold"
    ):
        evaluate("nowhere", {"type": "synthetic"}, background_treshold=0.5)
