"""tfvae.compat: protobuf's version check is turned off exactly when tensorflow-metadata needs a newer protobuf."""

import os

import pytest

from tfvae import compat

GENERATED = """
from google.protobuf import runtime_version as _runtime_version
_runtime_version.ValidateProtobufRuntimeVersion(
    _runtime_version.Domain.PUBLIC,
    6,
    31,
    1,
    '',
    'tensorflow_metadata/proto/v0/schema.proto'
)
"""


def test_gencode_version_is_read_from_a_generated_module():
    assert compat.gencode_version(GENERATED) == (6, 31, 1)
    assert compat.gencode_version("import os\n") is None  # protobuf < 5.26 generated no check
    assert compat.version_tuple("5.29.6") == (5, 29, 6)
    assert compat.version_tuple("6.31.1rc2") == (6, 31, 1)
    assert compat.version_tuple("2.20.0+cpu") == (2, 20, 0)


@pytest.mark.parametrize("runtime, gencode, switched", [
    ("5.29.6", (6, 31, 1), True),  # Colab's Python 3.13 runtime
    ("6.31.1", (6, 31, 1), False),
    ("6.33.0", (6, 31, 1), False),
    ("4.25.8", (4, 25, 3), False),
    ("5.29.6", None, False),  # no tensorflow-metadata, or one generated before the check existed
])
def test_the_check_is_switched_off_only_for_an_older_runtime(monkeypatch, runtime, gencode, switched):
    monkeypatch.delenv(compat.PROTOBUF_CHECK_SWITCH, raising=False)
    monkeypatch.setattr(compat, "_installed_metadata_gencode", lambda: gencode)
    monkeypatch.setattr(compat, "_installed_version", lambda name: runtime if name == "protobuf" else "1.21.0")
    if switched:
        with pytest.warns(RuntimeWarning, match=r"generated for protobuf >= 6\.31\.1 but protobuf 5\.29\.6"):
            notice = compat.allow_older_protobuf_for_tensorflow_metadata()
        assert notice is not None and os.environ[compat.PROTOBUF_CHECK_SWITCH] == "true"
    else:
        assert compat.allow_older_protobuf_for_tensorflow_metadata() is None
        assert compat.PROTOBUF_CHECK_SWITCH not in os.environ


def test_a_switch_the_user_set_is_left_alone(monkeypatch):
    monkeypatch.setenv(compat.PROTOBUF_CHECK_SWITCH, "false")
    monkeypatch.setattr(compat, "_installed_metadata_gencode", lambda: (6, 31, 1))
    monkeypatch.setattr(compat, "_installed_version", lambda name: "5.29.6")
    assert compat.allow_older_protobuf_for_tensorflow_metadata() is None
    assert os.environ[compat.PROTOBUF_CHECK_SWITCH] == "false"


def test_the_installed_stack_is_read_and_tensorflow_datasets_imports():
    """On this stack the decision matches the installed versions, and TFDS imports after tfvae.data."""
    from tfvae import data  # noqa: F401  (runs the switch before TFDS)
    import tensorflow_datasets as tfds

    gencode = compat._installed_metadata_gencode()
    runtime = compat.version_tuple(compat._installed_version("protobuf"))
    assert gencode is None or len(gencode) == 3
    if gencode is not None and runtime < gencode:
        assert os.environ.get(compat.PROTOBUF_CHECK_SWITCH) is not None
    assert tfds.builder("mnist").info.features["image"].shape == (28, 28, 1)
