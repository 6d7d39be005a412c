"""The package's public surface stays small and sorted."""

import appliance


def test_public_api_is_sorted_and_importable():
    assert appliance.__all__ == sorted(appliance.__all__)
    for name in appliance.__all__:
        assert hasattr(appliance, name), name
