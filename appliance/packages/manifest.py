"""The package manifest (``model.toml`` or ``model.json``): schema, loading, writing.

Every table forbids unknown fields, and every error names the manifest file and the
field, e.g. ``model.toml: missing field `version``` or
``model.toml: `variants[0].files[1].sha256` ...``. See ``docs/packages.md``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal, get_args

import msgspec

from ..errors import BadRequest
from ..registry.models import NAME_RE
from ..signature import DATATYPES, TensorSpec
from .staging import PRECISIONS

MANIFEST_NAMES = ("model.toml", "model.json")
Sha256 = Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{64}$")]
Relation = Literal["distilled-from", "quantized-from", "fine-tuned-from"]
Sensitivity = Literal["public", "internal", "pii", "phi"]
Impact = Literal["low", "high"]
_CHOICES = {"relation": Relation, "sensitivity": Sensitivity, "impact": Impact}


class _Strict(msgspec.Struct, forbid_unknown_fields=True):
    pass


def check_path(path: str) -> str:
    """A package-relative POSIX path: no absolute path, no ``.``/``..``, no backslash."""
    pure = PurePosixPath(path)
    if (not path or "\\" in path or pure.is_absolute()
            or any(p in ("", ".", "..") for p in path.split("/"))):
        raise ValueError(f"path: {path!r} must be a relative path inside the package "
                         "(no leading '/', no '.' or '..' parts, '/' as separator)")
    return path


class FileEntry(_Strict):
    path: str
    sha256: Sha256 | None = None
    size: Annotated[int, msgspec.Meta(ge=0)] | None = None

    def __post_init__(self) -> None:
        check_path(self.path)


class VariantDecl(_Strict):
    precision: str
    format: str
    files: list[FileEntry]
    primary: str

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision: {self.precision!r} is not one of "
                             f"{', '.join(PRECISIONS)}")
        paths = [f.path for f in self.files]
        if not paths:
            raise ValueError("files: a variant needs at least one file")
        if len(set(paths)) != len(paths):
            raise ValueError("files: a path is listed twice")
        if self.primary not in paths:
            raise ValueError(f"primary: {self.primary!r} is not one of this variant's files")


class TensorDecl(_Strict):
    name: str
    datatype: str
    shape: list[int]

    def __post_init__(self) -> None:
        if self.datatype not in DATATYPES:
            raise ValueError(f"datatype: {self.datatype!r} is not one of {', '.join(DATATYPES)}")

    def spec(self) -> TensorSpec:
        return TensorSpec(self.name, self.datatype, tuple(self.shape))


class TensorData(TensorDecl):
    data: list[Any]


class Warmup(_Strict):
    generate: bool = False
    inputs: list[TensorData] | None = None

    def __post_init__(self) -> None:
        if self.generate == (self.inputs is not None):
            raise ValueError("generate: give either `generate = true` or `inputs = [...]`")


class Golden(_Strict):
    inputs: list[TensorData]
    outputs: list[TensorData]
    atol: Annotated[float, msgspec.Meta(ge=0)] | None = None


class Parent(_Strict):
    model: str
    version: str
    relation: Relation


class Lineage(_Strict):
    training_job: str | None = None
    training_url: str | None = None
    code_commit: str | None = None
    dataset_digest: str | None = None
    parents: list[Parent] = msgspec.field(default_factory=list)


class Tags(_Strict):
    owner: str
    sensitivity: Sensitivity
    impact: Impact
    business_unit: str | None = None
    cost_centre: str | None = None


class Manifest(_Strict):
    name: str
    version: str
    variants: list[VariantDecl]
    inputs: list[TensorDecl]
    outputs: list[TensorDecl]
    tags: Tags
    description: str | None = None
    warmup: Warmup | None = None
    golden: list[Golden] = msgspec.field(default_factory=list)
    lineage: Lineage = msgspec.field(default_factory=Lineage)

    def __post_init__(self) -> None:
        for field in ("name", "version"):
            if not NAME_RE.match(getattr(self, field)):
                raise ValueError(f"{field}: {getattr(self, field)!r} is not valid: use 1-128 "
                                 "letters, digits, '.', '_' or '-', starting with one of those")
        if not self.variants:
            raise ValueError("variants: a package needs at least one variant")
        precisions = [v.precision for v in self.variants]
        if len(set(precisions)) != len(precisions):
            raise ValueError(f"variants: each variant needs its own precision: {precisions}")
        for field in ("inputs", "outputs"):
            if not getattr(self, field):
                raise ValueError(f"{field}: declare at least one tensor")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data, defaults included (what the registry stores)."""
        data: dict[str, Any] = json.loads(msgspec.json.encode(self))
        return data


def _join(loc: str, field: str) -> str:
    return f"{loc}.{field}" if loc else field


def _explain(filename: str, exc: msgspec.ValidationError) -> str:
    msg, _, loc = str(exc).partition(" - at `")
    loc = loc.rstrip("`").removeprefix("$").removeprefix(".")
    if m := re.match(r"Object missing required field `(.+)`$", msg):
        return f"{filename}: missing field `{_join(loc, m[1])}`"
    if m := re.match(r"Object contains unknown field `(.+)`$", msg):
        return f"{filename}: unknown field `{_join(loc, m[1])}`"
    if m := re.match(r"(\w+): (.*)$", msg, re.S):
        return f"{filename}: `{_join(loc, m[1])}` {m[2]}"
    last = re.split(r"[.\[]", loc)[-1] if loc else ""
    if last in _CHOICES:
        msg += f" (allowed: {', '.join(get_args(_CHOICES[last]))})"
    return f"{filename}: `{loc}`: {msg}" if loc else f"{filename}: {msg}"


def find_manifest(root: Path) -> Path:
    """The manifest file of a package directory (exactly one of model.toml, model.json)."""
    found = [root / n for n in MANIFEST_NAMES if (root / n).is_file()]
    if len(found) != 1:
        what = "both model.toml and model.json" if found else "no model.toml or model.json"
        raise BadRequest(f"{root}: a package has exactly one manifest at its top; found {what}")
    return found[0]


def load_manifest(source: Path | bytes, *, filename: str | None = None,
                  require_hashes: bool = True) -> Manifest:
    """Parse and check a manifest from a package directory, a manifest file, or bytes.

    ``filename`` (for bytes) picks TOML or JSON; without it bytes starting with ``{`` are
    JSON. ``require_hashes=False`` lets ``sha256``/``size`` be absent (``package build``
    fills them in).
    """
    if isinstance(source, Path):
        path = find_manifest(source) if source.is_dir() else source
        data, filename = path.read_bytes(), path.name
    else:
        data = source
        filename = filename or ("model.json" if data.lstrip().startswith(b"{") else "model.toml")
    decode = msgspec.json.decode if filename.endswith(".json") else msgspec.toml.decode
    try:
        manifest = decode(data, type=Manifest)
    except msgspec.ValidationError as exc:
        raise BadRequest(_explain(filename, exc)) from None
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise BadRequest(f"{filename}: not valid {filename.rsplit('.', 1)[-1].upper()}: "
                         f"{exc}") from None
    if require_hashes:
        for i, variant in enumerate(manifest.variants):
            for j, entry in enumerate(variant.files):
                for field in ("sha256", "size"):
                    if getattr(entry, field) is None:
                        raise BadRequest(
                            f"{filename}: missing field `variants[{i}].files[{j}].{field}` "
                            f"({entry.path}); `appliance package build` fills it in")
    return manifest


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}"
                                for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value]
    return value


def toml_text(data: dict[str, Any]) -> str:
    """``data`` as TOML: plain keys first, then ``[table]`` and ``[[array]]`` sections
    whose values are written inline; None values are left out (TOML has no null).
    Deterministic: keys keep their order."""
    data = _drop_none(data)

    def is_tables(v: Any) -> bool:
        return bool(v) and isinstance(v, list) and all(isinstance(x, dict) for x in v)

    plain = [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in data.items()
             if not isinstance(v, dict) and not is_tables(v)]
    sections = []
    for key, value in data.items():
        if isinstance(value, dict):
            items = [(f"[{_toml_key(key)}]", value)]
        elif is_tables(value):
            items = [(f"[[{_toml_key(key)}]]", x) for x in value]
        else:
            continue
        for header, table in items:
            body = [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in table.items()]
            sections.append("\n".join([header, *body]))
    return "\n\n".join(["\n".join(plain), *sections]) + "\n"


def dump_manifest(manifest: Manifest, filename: str) -> bytes:
    """Deterministic manifest bytes (TOML or JSON by ``filename``); unset fields left out."""
    data = _drop_none(msgspec.to_builtins(manifest))
    if filename.endswith(".json"):
        return (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode()
    return toml_text(data).encode()
