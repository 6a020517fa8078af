"""Loading mapping files: from a path or by the name of a built-in mapping.

:func:`load_mapping` reads the file (or finds a built-in one in the ``crmhub.mappings``
package), parses and compiles it, and returns a :class:`MappingFile`: the compiled stream
mappings with the file's path and a fingerprint of its bytes.
"""

from __future__ import annotations

import hashlib
import re
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import crmhub
from crmhub.errors import MappingError
from crmhub.mapping.compiler import _Compiler
from crmhub.mapping.stream import StreamMapping
from crmhub.mapping.yamlsource import _parse_yaml
from crmhub.transforms import BUILTIN_TRANSFORMS

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

_ANY_STREAM = "*"
_BUILTIN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


@dataclass(frozen=True, eq=False)
class MappingFile:
    """A loaded, validated and compiled mapping file.

    Attributes:
        path: where it was read from.
        fingerprint: a short hash of the file's bytes; it changes whenever the mapping does.
        system: the informational ``system`` name, if given.
    """

    path: str
    fingerprint: str
    system: str | None
    streams: Mapping[str, StreamMapping] = field(repr=False)

    def stream(self, name: str) -> StreamMapping:
        """The mapping of stream ``name``, or of ``"*"`` when the file has no such stream.

        Raises:
            MappingError: if the file maps neither.
        """
        found = self.streams.get(name) or self.streams.get(_ANY_STREAM)
        if found is None:
            known = ", ".join(sorted(self.streams))
            raise MappingError(f"no mapping for stream {name!r} (mapped: {known})", file=self.path)
        return found


def load_mapping(
    ref: str | Path,
    *,
    transforms: Mapping[str, Callable[..., Any]] | None = None,
    base_dir: Path | None = None,
) -> MappingFile:
    """Load, validate and compile a mapping file.

    Args:
        ref: a path (relative to ``base_dir`` when given), or the name of a built-in mapping
            (``"people_file"``) shipped in the ``crmhub.mappings`` package.
        transforms: the transforms mapping files may use, by name; the built-ins by default.
            The hub passes ``Plugins().transforms()``, which adds plugin transforms.
        base_dir: the directory relative paths are resolved against.

    Returns:
        The compiled mapping.

    Raises:
        MappingError: if the file cannot be read or is invalid; the message names the file,
            the line and what is wrong.
    """
    path, data = _read(ref, base_dir)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise MappingError("the mapping file is not UTF-8 text", file=path, line=line) from None
    tree = _parse_yaml(text, path)
    compiler = _Compiler(path, BUILTIN_TRANSFORMS if transforms is None else transforms)
    streams = compiler.compile_file(tree)
    system = tree.get("system")
    return MappingFile(
        path=path,
        fingerprint=hashlib.sha256(data).hexdigest()[:16],
        system=None if system is None else str(system),
        streams=types.MappingProxyType(streams),
    )


def _builtin_dir() -> Traversable:
    try:
        return resources.files("crmhub.mappings")
    except ModuleNotFoundError:  # running from a checkout: mappings/ sits beside crmhub/
        return Path(crmhub.__file__).parent.parent / "mappings"


def _builtin_names() -> list[str]:
    try:
        return sorted(
            entry.name.removesuffix(".yaml")
            for entry in _builtin_dir().iterdir()
            if entry.name.endswith(".yaml")
        )
    except OSError:
        return []


def _read(ref: str | Path, base_dir: Path | None) -> tuple[str, bytes]:
    path = Path(ref)
    if base_dir is not None and not path.is_absolute():
        path = base_dir / path
    try:
        if path.is_file():
            return str(path), path.read_bytes()
        name = str(ref)
        if _BUILTIN_NAME.fullmatch(name):
            filename = name if name.endswith(".yaml") else f"{name}.yaml"
            resource = _builtin_dir() / filename
            if resource.is_file():
                return str(resource), resource.read_bytes()
    except OSError as exc:
        message = f"cannot read the mapping file ({exc.strerror})"
        raise MappingError(message, file=str(path)) from None
    builtins = ", ".join(_builtin_names()) or "none"
    message = f"no such mapping file, nor a built-in mapping of that name (built-in: {builtins})"
    raise MappingError(message, file=str(path))
