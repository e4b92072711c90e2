"""The model registry: every bundled config loads through ``load_config`` and builds through its family."""

from __future__ import annotations

import json

import pytest
import torch

from zsseg_rt.contract.registry import ModelFamily
from zsseg_rt.models import (
    CLIPRCConfig,
    TrainingFreeConfig,
    ZegCLIPConfig,
    create_model,
    families,
    family_of,
    get_family,
    list_configs,
    load_config,
    load_model_config,
    register_family,
)
from zsseg_rt.models.zegformer import ZegFormerConfig

CONFIG_CLASSES = {"zegclip": ZegCLIPConfig, "cliprc": CLIPRCConfig, "training_free": TrainingFreeConfig}
CONFIG_CLASSES["zeroseg"] = load_config("zeroseg_tiny_test").__class__  # issue 19
CONFIG_CLASSES["zegformer"] = ZegFormerConfig  # issue 18


def test_builtin_families_registered():
    assert families()[:3] == ["zegclip", "cliprc", "training_free"]
    for name, cls in CONFIG_CLASSES.items():
        assert get_family(name).config_cls() is cls
    with pytest.raises(ValueError, match="unknown model family 'nope'"):
        get_family("nope")


def test_list_configs_by_family_partitions_all():
    every = list_configs()
    assert len(every) >= 20
    parts = [list_configs(family=f) for f in families()]
    assert sorted(n for part in parts for n in part) == every
    assert "cliprc_vitb16_voc_inductive" in list_configs(family="cliprc")
    assert "sclip_vitb16" in list_configs(family="training_free")
    assert "zegclip_tiny_test" in list_configs(family="zegclip")
    with pytest.raises(ValueError, match="unknown model family"):
        list_configs(family="zegformer_typo")


@pytest.mark.parametrize("name", list_configs())
def test_every_listed_config_loads_and_builds(name):
    cfg = load_config(name)
    fam = family_of(name)
    assert cfg.family == fam
    assert type(cfg) is CONFIG_CLASSES[fam]
    assert type(load_model_config(name)) is type(cfg)
    # tiny configs build for real on the CPU; full-size ones on the meta device (no memory, no weights)
    device = None if "tiny" in name else "meta"
    model = get_family(fam).model_cls()(cfg, device=device)
    assert model.config.name == cfg.name
    assert sum(p.numel() for p in model.parameters()) > 0
    if device is None:
        assert type(create_model(name)) is get_family(fam).model_cls()


def test_family_of_specs(tmp_path):
    assert family_of("cliprc-vitb16-voc") == "cliprc"  # alias -> cliprc_vitb16_voc_inductive
    assert family_of("sclip-vitb16") == "training_free"
    assert family_of({"name": "x"}) == "zegclip"
    assert family_of(load_config("cliprc_tiny_test")) == "cliprc"
    p = tmp_path / "c.json"
    p.write_text(json.dumps({"family": "training_free", "method": "maskclip"}))
    assert family_of(str(p)) == "training_free"
    with pytest.raises(FileNotFoundError, match="neither a file nor a bundled config"):
        family_of("no_such_config")


def test_config_family_mismatch_refused():
    with pytest.raises(ValueError, match="family='zegclip'"):
        ZegCLIPConfig.from_dict({"family": "cliprc", "name": "x"})


def test_native_checkpoint_dirs_resolve(tmp_path):
    from zsseg_rt.models import save_native

    torch.manual_seed(0)
    for tiny in ("zegclip_tiny_test", "cliprc_tiny_test", "zegformer_tiny_test"):
        model = create_model(tiny)
        out = tmp_path / tiny
        save_native(model, out)
        assert family_of(str(out)) == model.config.family
        assert type(load_config(str(out))) is type(model.config)
        assert type(create_model(str(out))) is type(model)


def test_register_family_extends_registry():
    entry = ModelFamily(
        name="zz_test_family",
        config_class="zsseg_rt.models.zegclip.config:ZegCLIPConfig",
        model_class="zsseg_rt.models.zegclip.model:ZegCLIP",
        load_config="zsseg_rt.models.zegclip.config:load_zegclip_config",
        create="zsseg_rt.models.zegclip.model:create_zegclip",
    )
    from zsseg_rt.contract import registry

    with registry.FAMILIES.kept():
        register_family(entry)
        assert "zz_test_family" in families()
        register_family(entry)  # the same entry again is a no-op
        other = ModelFamily(
            name="zz_test_family", config_class="a:b", model_class="a:b", load_config="a:b", create="a:b"
        )
        with pytest.raises(ValueError, match="^model family 'zz_test_family' is already registered$"):
            register_family(other)
    assert "zz_test_family" not in families()


def test_one_base_config_holds_the_shared_fields():
    import dataclasses

    from zsseg_rt.contract.common.config import BaseModelConfig

    shared = {f.name for f in dataclasses.fields(BaseModelConfig)}
    assert {"clip_model", "image_size", "crop_size", "stride", "mean", "std", "class_names", "templates"} <= shared
    for cls in CONFIG_CLASSES.values():
        assert issubclass(cls, BaseModelConfig)
        assert cls.__dataclass_fields__["family"].default in CONFIG_CLASSES
    with pytest.raises(ValueError, match="must have family=''"):
        BaseModelConfig().check_family()  # the base has no family: a config must name one
    with pytest.raises(ValueError, match="family='training_free'"):
        load_config("training_free_tiny_test", family="zegclip")


def test_every_family_is_a_plugin_of_its_own_package():
    """Each family implements the Family protocol and is registered by its own package (the registry names none)."""
    import importlib

    from zsseg_rt.contract.family import Family
    from zsseg_rt.contract.registry import default_family

    assert default_family().name == "zegclip"  # configs without a "family" key predate families
    for name in families():
        family = get_family(name)
        assert isinstance(family, Family) and family.name == name and family.label
        assert importlib.import_module(f"zsseg_rt.models.{name}").FAMILY is family
        assert family.configs_dir().is_dir() and family.configs_dir().parent.name == name
        for public, ref in family.public_names.items():
            assert ref.startswith(f"zsseg_rt.models.{name}.") and getattr(
                importlib.import_module("zsseg_rt.models"), public
            )
        if family.checkpoints.format:
            model_module = importlib.import_module(family.model_class.partition(":")[0])
            formats = {getattr(model_module, n) for n in dir(model_module) if n.endswith("NATIVE_FORMAT")}
            assert not formats or family.checkpoints.format in formats  # the model module's own constant agrees


def test_models_package_imports_no_torch_until_a_name_is_used():
    import subprocess
    import sys

    code = (
        "import sys, zsseg_rt.models as m\n"
        "names = m.__all__\n"
        "from zsseg_rt.models import families, get_family, list_configs\n"
        "assert 'ZegCLIP' in names and len(families()) >= 5 and list_configs()\n"
        "print('torch' in sys.modules, 'open_clip' in sys.modules)\n"
        "from zsseg_rt.models import ZegCLIP\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False", "True"]


def test_family_capabilities_replace_the_duck_typed_hooks():
    """The generic exporter, trainer and evaluation call a family's capability objects; each family answers for its
    own models."""
    from zsseg_rt.bundle import Names

    tiny = create_model("cliprc_tiny_test")
    cliprc = get_family("cliprc")
    assert cliprc.export.image_outputs(tiny) == (Names.IMAGE_GLOBAL, Names.PATCHES, Names.REGIONS)
    assert type(cliprc.training.loss(tiny)).__name__ == "CLIPRCLoss"
    zegclip = get_family("zegclip")
    model = create_model("zegclip_tiny_test")
    assert zegclip.export.image_outputs(model) == Names.IMAGE_ENCODER_OUTPUTS
    assert zegclip.export.postprocess(model) == {"activation": "sigmoid"}
    assert type(zegclip.training.loss(model)).__name__ == "ZegCLIPLoss" and zegclip.export.writer(model) is None
    zegformer = get_family("zegformer")
    assert zegformer.export.pipeline == "two_stage" and zegformer.export.writer(None) is not None
    assert [a.dest for a in zegformer.checkpoints.conversion_arguments()] == ["clip_pretrained"]
    assert get_family("zeroseg").evaluation.protocol == "background_threshold"
    assert get_family("training_free").training is None  # its models are not trained
    with pytest.raises(NotImplementedError, match="no training loss"):
        get_family("zeroseg").training.loss(None)  # its own trainer computes the distillation loss
    with pytest.raises(ValueError, match="no text tower"):
        get_family("zeroseg").export.writer(create_model("zeroseg_tiny_test"))


def test_a_family_is_identity_factories_and_four_capabilities():
    """The protocol is slim: identity, factories and the capability objects (each built once, from the classes the
    registration names); a registration naming a class that is not a capability is refused."""
    from zsseg_rt.contract.family import Checkpoints, Evaluation, Export, Family, Training

    members = set(Family.__annotations__) | {n for n in vars(Family) if not n.startswith("_")}
    assert members == {
        "name",
        "display_name",
        "description",
        "order",
        "default",
        "public_names",
        "label",
        "config_cls",
        "load",
        "config_aliases",
        "configs_dir",
        "model_cls",
        "build",
        "checkpoints",
        "export",
        "evaluation",
        "training",
    }, sorted(members)
    for name in families():
        family = get_family(name)
        assert isinstance(family.checkpoints, Checkpoints) and family.checkpoints is family.checkpoints
        assert isinstance(family.export, Export) and isinstance(family.evaluation, Evaluation)
        assert family.training is None or isinstance(family.training, Training)
    with pytest.raises(TypeError, match="export_class must be a subclass of Export"):
        ModelFamily(
            name="zz", config_class="a:b", model_class="a:b", load_config="a:b", create="a:b", export_class=dict
        )


def test_each_family_names_its_official_synonym_rule():
    """``synonym_rule``: the training-free methods' code scores a class with several names by the max over its names'
    probabilities, ZegFormer's by the mean of the names' embeddings (and the other families by that default); the
    generic exporter records the family's rule in meta.json, where the runtime reads it."""
    rules = {name: get_family(name).export.synonym_rule for name in families()}
    assert rules["training_free"] == "max" and rules["zegformer"] == "mean"
    assert set(rules.values()) <= {"mean", "max"} and rules["zegclip"] == rules["cliprc"] == "mean"
    with pytest.raises(ValueError, match="synonym_rule must be one of"):
        ModelFamily(
            name="zz", config_class="a:b", model_class="a:b", load_config="a:b", create="a:b", synonym_rule="sum"
        )
    from zsseg_rt.export.onnx_export import build_meta

    for config, rule in (("zegclip_tiny_test", "mean"), ("training_free_tiny_test", "max")):
        assert build_meta(create_model(config), 8, 18, None, {})["postprocess"]["synonyms"] == rule
