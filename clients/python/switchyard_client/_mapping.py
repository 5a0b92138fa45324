"""Mappings: Switchyard maps input and output on the server with ``$Input{path}``
and ``$Response{path}`` templates. ``map_input(fn)`` / ``map_output(fn)`` take a
function; it is turned into the template it describes by calling it once with
a stand-in that records which fields it reads. Attribute and item reads,
nesting, lists, constants, f-strings and ``+`` with strings translate;
arithmetic, comparisons and branching on values cannot (the values exist only
on the server, at run time) and are refused, naming the field."""

from __future__ import annotations

import inspect
from typing import Any, Callable, Union

Mapping = Union[Callable[[Any], Any], dict, list, str]


class MappingError(TypeError):
    """A mapping function that cannot be a template."""


class _Ref:
    __slots__ = ("_root", "_path")

    def __init__(self, root: str, path: tuple[str, ...]) -> None:
        object.__setattr__(self, "_root", root)
        object.__setattr__(self, "_path", path)

    def _text(self) -> str:
        return f"{self._root}{{{'.'.join(self._path)}}}"

    def __getattr__(self, name: str) -> "_Ref":
        if name.startswith("__"):
            raise AttributeError(name)
        return _Ref(self._root, self._path + (name,))

    def __getitem__(self, key: Any) -> "_Ref":
        return _Ref(self._root, self._path + (str(key),))

    def get(self, key: str, default: Any = None) -> "_Ref":
        """``input.get("field")`` reads like ``input["field"]`` (a default cannot apply on the server)."""
        if default is not None:
            raise MappingError(f"{self[key]._text()}: a default cannot apply on the server; map the field as it is")
        return self[key]

    def __str__(self) -> str:
        return self._text()

    def __format__(self, spec: str) -> str:
        return self._text()

    def __add__(self, other: Any) -> str:
        if isinstance(other, (str, _Ref)):
            return self._text() + str(other)
        raise self._computes()

    def __radd__(self, other: Any) -> str:
        if isinstance(other, str):
            return other + self._text()
        raise self._computes()

    def _computes(self) -> MappingError:
        return MappingError(
            f"the mapping computes with {self._text()} (arithmetic, a comparison or a branch); Switchyard maps on the "
            "server with templates and cannot run code there. Put the computed value in the run's input and read it, "
            "or map the field as it is"
        )

    def _refuse(self, *_: Any) -> Any:
        raise self._computes()

    __sub__ = __rsub__ = __mul__ = __rmul__ = __truediv__ = __rtruediv__ = _refuse
    __floordiv__ = __rfloordiv__ = __mod__ = __rmod__ = __pow__ = __rpow__ = _refuse
    __neg__ = __pos__ = __abs__ = __round__ = __int__ = __float__ = __bool__ = _refuse
    __lt__ = __le__ = __gt__ = __ge__ = __eq__ = __ne__ = _refuse
    __hash__ = object.__hash__

    def __iter__(self) -> Any:
        raise MappingError(f"{self._text()}: a mapping cannot iterate a value; map the whole field instead")


def to_template(mapping: Mapping, root: str, where: str) -> Any:
    """The template a mapping stands for; ``root`` is ``$Input`` or ``$Response``."""
    if not callable(mapping):
        return mapping
    try:
        produced = mapping(_Ref(root, ()))
    except MappingError as e:
        raise MappingError(f"{where}: {e}") from None
    except Exception as e:  # noqa: BLE001 - any failure of the user's function is explained
        raise MappingError(
            f"{where}: the mapping function could not be turned into a template ({e}). Switchyard maps on the "
            f"server: read fields only, or give a template such as {{'to': '{root}{{phone}}'}}"
        ) from None
    if inspect.isawaitable(produced):
        raise MappingError(f"{where}: a mapping function must return its result, not a coroutine")
    return _walk(produced, where)


def _walk(value: Any, where: str) -> Any:
    if isinstance(value, _Ref):
        return value._text()
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise MappingError(f"{where}: {value} is not a JSON number")
        return value
    if isinstance(value, dict):
        return {str(k): _walk(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_walk(v, f"{where}[{i}]") for i, v in enumerate(value)]
    raise MappingError(f"{where}: a mapping cannot hold a {type(value).__name__}")
