import pytest

import decart_widget as dw
from decart_widget import models


def test_known_models_have_protocol_sizes() -> None:
    assert models.get("lucy-2.1").to_dict() == {
        "name": "lucy-2.1",
        "width": 1088,
        "height": 624,
        "fps": 30,
    }
    assert (models.get("lucy-2.5").width, models.get("lucy-2.5").height) == (1280, 720)
    assert models.get("lucy-restyle-2").height == 704
    assert models.get("lucy_2_rt").fps == 20


def test_unknown_model_names_the_known_ones() -> None:
    with pytest.raises(dw.InvalidInput, match=r"unknown model 'lucy-9'.*lucy-2.1"):
        models.get("lucy-9")


def test_custom_model_passes_through_and_can_be_registered() -> None:
    custom = dw.RealtimeModel("my-model", 640, 360, 24)
    assert models.get(custom) is custom
    assert not models.is_known("my-model")
    models.register(custom)
    try:
        assert models.get("my-model") == custom
    finally:
        models._REGISTRY.pop("my-model")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("", 640, 360, 30), "non-empty"),
        (("m", 0, 360, 30), "width"),
        (("m", 640, -1, 30), "height"),
        (("m", 640, 360, 2.5), "fps"),
        (("m", 640, 360, True), "fps"),
    ],
)
def test_bad_custom_models_are_refused(args: tuple[object, ...], message: str) -> None:
    with pytest.raises(dw.InvalidInput, match=message):
        dw.RealtimeModel(*args)  # type: ignore[arg-type]


def test_legacy_models_are_listed_only_on_request() -> None:
    assert "mirage" not in models.names()
    assert "mirage" in models.names(include_legacy=True)


@pytest.mark.parametrize(
    ("name", "size"),
    [
        ("lucy-2.1", (1088, 624)),
        ("lucy-vton-2", (1088, 624)),
        ("lucy-vton-3", (1088, 624)),
        ("lucy-2.5", (1280, 720)),
        ("lucy-vton-3.5", (1280, 720)),
        ("lucy-restyle-2", (1280, 704)),
        ("lucy-latest", (1280, 720)),
        ("lucy-vton-latest", (1280, 720)),
        ("lucy-restyle-latest", (1280, 704)),
        ("mirage", (1280, 704)),
        ("mirage_v2", (1280, 704)),
        ("lucy_v2v_720p_rt", (1280, 704)),
        ("lucy_2_rt", (1280, 720)),
    ],
)
def test_decarts_current_list_with_its_sizes(name: str, size: tuple[int, int]) -> None:
    model = models.get(name)
    assert (model.name, (model.width, model.height)) == (name, size)


def test_the_latest_aliases_take_their_targets_size_and_keep_their_name() -> None:
    for alias, target in models.ALIASES.items():
        assert alias.endswith("-latest") and models.is_known(target)
        aliased, resolved = models.get(alias), models.get(target)
        assert (aliased.width, aliased.height, aliased.fps) == (
            resolved.width,
            resolved.height,
            resolved.fps,
        )
    assert models.ALIASES["lucy-latest"] == "lucy-2.5"
    assert models.ALIASES["lucy-vton-latest"] == "lucy-vton-3.5"
    assert set(models.names()) >= {"lucy-2.1", "lucy-2.5", "lucy-restyle-2", "lucy-vton-3.5"}
