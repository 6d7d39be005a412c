"""Direct tests of the registry: records, version order, the generation counter, atomic
transactions, and a corrupt database file refused with a clear error."""

from __future__ import annotations

import pytest
from helpers.models import scale_model

from appliance.packages.importer import import_model
from appliance.registry import Registry
from appliance.registry.db import bump_generation, generation, transaction
from appliance.registry.models import version_key


def test_versions_are_numbered_and_ordered_numerically(tmp_path, registry, catalog):
    for factor in (1.0, 2.0, 3.0):
        import_model(registry, catalog, scale_model(tmp_path / f"s{factor}.onnx", factor),
                     name="s")
    assert [v.version for v in registry.versions("s")] == ["1", "2", "3"]
    assert registry.next_version("s") == "4"
    assert sorted(["10", "9", "beta", "2"], key=version_key) == ["2", "9", "10", "beta"]
    record = registry.version("s", "2")
    assert record.stage == "registered" and record.digest


def test_a_failed_transaction_leaves_nothing_behind(registry):
    before = generation(registry.db)

    def crash_mid_write() -> None:
        with transaction(registry.db):
            bump_generation(registry.db)
            raise RuntimeError("crash mid-write")

    with pytest.raises(RuntimeError, match="crash mid-write"):
        crash_mid_write()
    assert generation(registry.db) == before
    with transaction(registry.db):
        bump_generation(registry.db)
    assert generation(registry.db) == before + 1


def test_the_registry_reopens_with_what_was_committed(tmp_path, catalog):
    first = Registry(tmp_path / "var")
    try:
        import_model(first, catalog, scale_model(tmp_path / "s.onnx", 2.0), name="s")
    finally:
        first.close()
    again = Registry(tmp_path / "var")
    try:
        assert [m.name for m in again.models()] == ["s"]
        assert again.model_source(again.version("s", "1")).read_bytes() == (
            tmp_path / "s.onnx").read_bytes()
    finally:
        again.close()
