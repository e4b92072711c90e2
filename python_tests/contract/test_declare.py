"""declare_family: the family layout's conventions written out as the ModelFamily they stand for."""

import pytest

from zsseg_rt.contract import registry
from zsseg_rt.contract.common.declare import declare_family
from zsseg_rt.contract.family import ModelFamily


@pytest.fixture
def empty_registry():
    with registry.FAMILIES.kept():  # what declare_family registers is gone after the test
        yield


def test_conventions_expand_to_the_full_references(empty_registry):
    family = declare_family(
        "some.pkg.myfam",
        display_name="MyFam",
        config_class=".config:MyConfig",
        model_class="elsewhere.model:MyModel",
        create=".factory",
        native=".native",
        official=".official",
        official_converter=".official:convert_myfam",
        public={".model": ("MyModel", "create_myfam"), ".config": ("MyConfig",)},
    )
    assert family == ModelFamily(
        name="myfam",
        display_name="MyFam",
        config_class="some.pkg.myfam.config:MyConfig",
        load_config="some.pkg.myfam.config:load_myfam_config",
        model_class="elsewhere.model:MyModel",
        create="some.pkg.myfam.factory:create_myfam",
        native_loader="some.pkg.myfam.native:load_native_myfam",
        native_format="zsseg_rt.myfam.v1",
        native_formats=("zsseg_rt.myfam.",),
        official_keys="some.pkg.myfam.official:is_myfam_keys",
        official_loader="some.pkg.myfam.official:load_official_myfam",
        official_converter="some.pkg.myfam.official:convert_myfam",
    )
    assert dict(family.public_names) == {
        "MyModel": "some.pkg.myfam.model:MyModel",
        "create_myfam": "some.pkg.myfam.model:create_myfam",
        "MyConfig": "some.pkg.myfam.config:MyConfig",
    }
    assert registry.FAMILIES.find("myfam") is family


def test_given_references_win_and_nothing_native_or_official_is_invented(empty_registry):
    family = declare_family(
        "pkg.other",
        config_class=".config:C",
        model_class=".model:M",
        load_config=".config:read",
        create=".model:build",
    )
    assert (family.load_config, family.create) == ("pkg.other.config:read", "pkg.other.model:build")
    assert (family.native_loader, family.native_format, family.native_formats) == ("", "", ())
    assert (family.official_keys, family.official_loader, dict(family.public_names)) == ("", "", {})


def test_bad_public_names_are_refused(empty_registry):
    kw = dict(config_class=".config:C", model_class=".model:M", create=".model")
    with pytest.raises(TypeError, match="sequence of names"):
        declare_family("pkg.a", public={".model": "M"}, **kw)
    with pytest.raises(ValueError, match="listed twice"):
        declare_family("pkg.b", public={".model": ("M",), ".other": ("M",)}, **kw)
