"""The realtime model registry (docs/protocol.md, "Models"): Decart's current list.

Only the name goes on the wire; width, height and fps are client-side hints for the capture.
The ``-latest`` names are Decart's aliases: they go on the wire as they are (the service resolves
them) and take the size of the model they stand for today (`ALIASES`). Model names churn, so the
registry is open: `register` adds custom definitions.
"""

from __future__ import annotations

from dataclasses import dataclass

from .protocol._errors import InvalidInput


@dataclass(frozen=True)
class RealtimeModel:
    name: str
    width: int
    height: int
    fps: int
    legacy: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise InvalidInput("model name must be a non-empty string")
        for label, value in (("width", self.width), ("height", self.height), ("fps", self.fps)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise InvalidInput(f"model {label} must be a positive integer, got {value!r}")

    def to_dict(self) -> dict[str, int | str]:
        return {"name": self.name, "width": self.width, "height": self.height, "fps": self.fps}


_REGISTRY: dict[str, RealtimeModel] = {}


def register(model: RealtimeModel) -> RealtimeModel:
    """Add (or replace) a model definition; returns it."""
    _REGISTRY[model.name] = model
    return model


for _name in ("lucy-2.1", "lucy-vton-2", "lucy-vton-3"):
    register(RealtimeModel(_name, 1088, 624, 30))
for _name in ("lucy-2.5", "lucy-vton-3.5"):
    register(RealtimeModel(_name, 1280, 720, 30))
register(RealtimeModel("lucy-restyle-2", 1280, 704, 30))

#: Decart's ``-latest`` aliases and the model each stands for (as of Decart's changelog of
#: July-August 2026; ``POST /v1/models/resolve`` on the HTTP API resolves them for sure).
ALIASES: dict[str, str] = {
    "lucy-latest": "lucy-2.5",
    "lucy-vton-latest": "lucy-vton-3.5",
    "lucy-restyle-latest": "lucy-restyle-2",
}
for _alias, _target in ALIASES.items():
    _model = _REGISTRY[_target]
    register(RealtimeModel(_alias, _model.width, _model.height, _model.fps))
register(RealtimeModel("mirage", 1280, 704, 25, legacy=True))
register(RealtimeModel("mirage_v2", 1280, 704, 22, legacy=True))
register(RealtimeModel("lucy_v2v_720p_rt", 1280, 704, 25, legacy=True))
register(RealtimeModel("lucy_2_rt", 1280, 720, 20, legacy=True))

DEFAULT_MODEL = "lucy-2.1"


def get(model: str | RealtimeModel) -> RealtimeModel:
    """Look a model up by name (a `RealtimeModel` passes through, registered or not)."""
    if isinstance(model, RealtimeModel):
        return model
    if not isinstance(model, str):
        raise InvalidInput(f"model must be a name or a RealtimeModel, got {type(model).__name__}")
    try:
        return _REGISTRY[model]
    except KeyError:
        known = ", ".join(names())
        raise InvalidInput(
            f"unknown model {model!r}; known models: {known}. "
            "For another model, pass RealtimeModel(name, width, height, fps)."
        ) from None


def names(*, include_legacy: bool = False) -> list[str]:
    return [m.name for m in _REGISTRY.values() if include_legacy or not m.legacy]


def is_known(name: str) -> bool:
    return name in _REGISTRY
