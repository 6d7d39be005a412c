"""The package's public surface stays small and sorted."""

from helpers import ROOT

import appliance


def test_public_api_is_sorted_and_importable():
    assert appliance.__all__ == sorted(appliance.__all__)
    for name in appliance.__all__:
        assert hasattr(appliance, name), name


def test_bundled_plugins_use_only_the_public_surface():
    import ast

    plugins = sorted(ROOT.glob("plugins/*/__init__.py"))
    assert len(plugins) >= 4
    for path in plugins:
        for node in ast.walk(ast.parse(path.read_text())):
            modules = ([node.module or ""] if isinstance(node, ast.ImportFrom)
                       else [a.name for a in node.names] if isinstance(node, ast.Import)
                       else [])
            for module in modules:
                assert not module.startswith("appliance."), f"{path.parent.name}: {module}"


def test_a_plain_model_source_reads_companion_files_by_name_only(tmp_path):
    import pytest

    (tmp_path / "m.xml").write_text("<net/>")
    (tmp_path / "m.bin").write_bytes(b"\x01\x02")
    source = appliance.ModelSource(tmp_path / "m.xml", "openvino")
    assert not source.encrypted
    assert source.read_bytes() == b"<net/>"
    assert source.read_file_buffer("m.bin") == bytearray(b"\x01\x02")
    for bad in ("../m.bin", "", "..", "a/b"):
        with pytest.raises(appliance.InvalidModelFile):
            source.read_file_bytes(bad)
