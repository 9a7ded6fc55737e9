"""One registry mechanism for everything pluggable, and the schema checks behind it.

Datasets, encoders, losses, model architectures, neurons, surrogates, optimisers, recipes
(and NIR handlers, targets, kernels) are each a :class:`Registry`: a named map from a string
to an object with a one-line description. Lookups of unknown names raise
:class:`UnknownNameError` listing what exists, so a typo never ends in a ``KeyError``
traceback.

A registry of components also checks their parameters. ``REG.build(name, *inputs,
**params)`` validates ``params`` against the component's parameter model and calls it. The
model is either declared (``register(..., params=SomeParams)``, a :class:`Params`
subclass; the component then receives one validated instance after its inputs) or derived
from the component's signature: every annotated parameter except the registry's ``inputs``
(what the caller supplies, such as a model's input shape) becomes a field with the same
default. Checks are strict: no unknown keys, no string read as a number, no bool read as an
integer, finite numbers only, plus the ranges written into the annotations
(``Annotated[float, Field(gt=0)]``).

:func:`parse_as` applies the same checks to whole files (recipes, energy profiles): any
pydantic model, with its validation errors turned into the one-line
``problem -- fix`` of :class:`SpikeportError`, naming the source, the key path and what
the key must be.
"""
from __future__ import annotations

import difflib
import inspect
import re
import typing
from collections import abc
from dataclasses import dataclass
from pathlib import Path
from types import NoneType, UnionType
from typing import Annotated, Any, Callable, Generic, Iterator, Literal, Mapping, TypeVar

import annotated_types as at
import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError, create_model
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from typing_extensions import is_typeddict

from spikeport.core.errors import ConfigError, SpikeportError, UnknownNameError


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2's floats: ``1e-3`` and ``5E4`` are numbers (YAML 1.1,
    which PyYAML follows, reads a float without a dot as text)."""


_Loader.yaml_implicit_resolvers = {k: list(v) for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_Loader.add_implicit_resolver(  # after the int resolver: 10 stays an int
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)[eE][-+]?[0-9]+$"),
    list("-+0123456789."))


def load_yaml(text: str) -> Any:
    """Parse the YAML ``text`` of a recipe, a ``--set`` value or an energy profile: safe
    (no Python objects), with ``1e-3`` read as the number it looks like."""
    return yaml.load(text, Loader=_Loader)

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

PARAMS_CONFIG = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False,
                           arbitrary_types_allowed=True)


class Params(BaseModel):
    """Base of declared parameter models and file schemas: strict types, no unknown keys,
    finite numbers."""

    model_config = PARAMS_CONFIG


class Invalid(ValueError):
    """Raise inside a pydantic validator for a rule the types cannot state; reported as
    ``<key path>: <problem> -- fix: <fix>`` (``key`` extends the path below the field)."""

    def __init__(self, problem: str, fix: str | None = None, key: str | None = None):
        super().__init__(problem)
        self.problem, self.fix, self.key = problem, fix, key


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    obj: T
    summary: str
    params: type[BaseModel] | None = None  # declared parameter model, if any


class Registry(Generic[T]):
    """``kind`` names the registry in messages; ``inputs`` are the leading arguments of a
    component that its caller supplies (not parameters); ``section`` is the recipe section
    its parameters live in, prefixed to key paths (``encoder.gain``); ``or_else`` is what
    else a name may be, added to the fix of an unknown name."""

    def __init__(self, kind: str, *, inputs: tuple[str, ...] = (), section: str | None = None,
                 or_else: str | None = None):
        self.kind, self.inputs, self.section, self.or_else = kind, inputs, section, or_else
        self._entries: dict[str, Entry[T]] = {}
        self._models: dict[tuple, type[BaseModel]] = {}

    # ------------------------------------------------------------------ registering
    def register(self, name: str, summary: str | None = None, *,
                 params: type[BaseModel] | None = None) -> Callable[[T], T]:
        """Decorator: ``@REG.register("name", "what it is")``."""

        def deco(obj: T) -> T:
            self.add(name, obj, summary, params=params)
            return obj

        return deco

    def for_types(self, *types: type, wrap: Callable | None = None) -> Callable:
        """Decorator registering one object under the class name of each of ``types`` (NIR
        node or torch module classes), summarised by the first line of its docstring;
        ``wrap(type, obj)`` stores something derived from the object instead."""

        def deco(obj):
            summary = _first_line(getattr(obj, "__doc__", None))
            for t in types:
                self.add(t.__name__, wrap(t, obj) if wrap else obj, summary)
            return obj

        return deco

    def add(self, name: str, obj: T, summary: str | None = None, *,
            params: type[BaseModel] | None = None) -> None:
        """Register ``obj``; without a summary, the first line of its docstring."""
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} registered twice")
        if summary is None:
            summary = _first_line(getattr(obj, "__doc__", None))
        self._entries[name] = Entry(name, obj, summary, params)

    @classmethod
    def of_files(cls, kind: str, folder: Path, pattern: str = "*.yaml", *,
                 summary: Callable[[Path], str] | None = None, or_else: str | None = None,
                 ) -> "Registry[Path]":
        """A registry of data files (recipes, energy profiles): name = file stem, object =
        path, summary = ``summary(path)`` or the file's first comment line."""
        reg: Registry[Path] = cls(kind, or_else=or_else)
        for path in sorted(Path(folder).glob(pattern)):
            reg.add(path.stem, path, (summary or _first_comment)(path))
        return reg

    # ------------------------------------------------------------------ looking up
    def get(self, name: str) -> T:
        return self._entry(name).obj

    def _entry(self, name: str) -> Entry[T]:
        try:
            return self._entries[name]
        except (KeyError, TypeError):  # TypeError: an unhashable "name" from a YAML file
            options = ", ".join(self.names()) + (f", or {self.or_else}" if self.or_else else "")
            raise UnknownNameError(f"unknown {self.kind} {name!r}",
                                   f"use one of: {options}") from None

    def __contains__(self, name: object) -> bool:
        try:
            return name in self._entries
        except TypeError:
            return False

    def names(self) -> list[str]:
        return sorted(self._entries)

    def entries(self) -> Iterator[Entry[T]]:
        for name in self.names():
            yield self._entries[name]

    def name_type(self) -> Any:
        """An annotation for a parameter naming an entry of this registry: a string,
        checked against the names registered when the value is validated."""

        def known(value: str) -> str:
            if value not in self:
                raise Invalid(f"unknown {self.kind} {value!r}",
                              f"use one of: {', '.join(self.names())}")
            return value

        return Annotated[str, AfterValidator(known)]

    # ------------------------------------------------------------------ parameters
    def params_model(self, name: str, extend: type[BaseModel] | None = None) -> type[BaseModel]:
        """The parameter model of ``name`` (declared, or derived from its signature), with
        the fields of ``extend`` added when given."""
        key = (name, extend)
        if key not in self._models:
            entry = self._entry(name)
            base = entry.params or _derive_model(f"{self.kind} {name}", entry.obj, self.inputs)
            self._models[key] = base if extend is None else create_model(
                f"{base.__name__}+{extend.__name__}", __base__=(base, extend))
        return self._models[key]

    def defaults(self, name: str) -> dict[str, Any]:
        """Every parameter of ``name`` that has a default, in declaration order."""
        return defaults_of(self.params_model(name))

    def validate_params(self, name: str, params: Mapping[str, Any],
                        extend: type[BaseModel] | None = None) -> BaseModel:
        """``params`` checked against the parameter model of ``name``; a
        :class:`ConfigError` ``<kind> '<name>': <key path> ...`` otherwise."""
        model = self.params_model(name, extend)
        return parse_as(model, dict(params), where=f"{self.kind} {name!r}", section=self.section)

    def check(self, name: str, params: Mapping[str, Any],
              extend: type[BaseModel] | None = None) -> dict[str, Any]:
        """The checked parameters, defaults filled in, as a dict."""
        return fields_of(self.validate_params(name, params, extend))

    def build(self, name: str, *inputs: Any, **params: Any) -> Any:
        """Check ``params`` and call the component ``name`` with ``inputs`` first: a
        declared model is passed as one argument, derived parameters as keywords."""
        entry = self._entry(name)
        checked = self.validate_params(name, params)
        if entry.params is not None:
            return entry.obj(*inputs, checked)
        return entry.obj(*inputs, **fields_of(checked))


def fields_of(instance: BaseModel) -> dict[str, Any]:
    """A validated model's fields as a dict (nested values left as they are)."""
    return {k: getattr(instance, k) for k in type(instance).model_fields}


def defaults_of(model: type[BaseModel]) -> dict[str, Any]:
    out = {}
    for k, f in model.model_fields.items():
        if not f.is_required():
            out[k] = f.get_default(call_default_factory=True)
    return out


def _first_line(doc: str | None) -> str:
    doc = (doc or "").strip()
    return doc.splitlines()[0] if doc else ""


def _first_comment(path: Path) -> str:
    first = (path.read_text().splitlines() or [""])[0]
    return first.lstrip("# ").strip() if first.startswith("#") else ""


def _derive_model(title: str, obj: Callable, inputs: tuple[str, ...]) -> type[BaseModel]:
    """A :class:`Params` model with one field per annotated parameter of ``obj`` that is
    not one of ``inputs``; a programming error in the component is a ``TypeError``."""
    sig = inspect.signature(obj)
    hints = typing.get_type_hints(obj, include_extras=True)
    missing = [i for i in inputs if i not in sig.parameters]
    if missing:
        raise TypeError(f"{title}: inputs {missing} are not parameters of {obj!r}")
    fields: dict[str, Any] = {}
    for p in sig.parameters.values():
        if p.name in inputs:
            continue
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise TypeError(f"{title}: *{p.name} cannot be checked; declare params=...")
        if p.name not in hints:
            raise TypeError(f"{title}: parameter {p.name!r} needs a type annotation")
        fields[p.name] = (hints[p.name], ... if p.default is p.empty else p.default)
    return create_model(title.replace(" ", "_"), __base__=Params, **fields)


# ---------------------------------------------------------------------- files and errors

def parse_as(schema: type[M], data: Any, *, where: str = "", section: str | None = None,
             error: type[SpikeportError] = ConfigError, top: str = "key") -> M:
    """``data`` validated as ``schema``, or ``error("<where>: <problem>", <fix>)`` for its
    first problem. ``section`` prefixes key paths; ``top`` is what a top-level key is
    called in "unknown ..." messages (a recipe's are sections)."""
    try:
        return schema.model_validate(data)
    except ValidationError as e:
        problem, fix = explain(schema, e, data, section=section, top=top)
    raise error(f"{where}: {problem}" if where else problem, fix)


def explain(schema: type[BaseModel], err: ValidationError, data: Any, *,
            section: str | None = None, top: str = "key") -> tuple[str, str]:
    """(problem, fix) of the first error: every unknown key of one mapping together (most
    often a typo), else the first wrong value (a whole list, not the item inside it)."""
    errors = err.errors()
    extra = [e for e in errors if e["type"] == "extra_forbidden"]
    if extra:
        parent = tuple(extra[0]["loc"][:-1])
        keys = [str(e["loc"][-1]) for e in extra if tuple(e["loc"][:-1]) == parent]
        allowed = sorted(_fields(_field_at(schema, parent)[0]) or {})
        noun = top if not parent else "key"
        paths = ", ".join(_dotted(section, (*parent, k)) for k in keys)
        close = difflib.get_close_matches(keys[0], allowed, n=1)
        hint = f"did you mean {_dotted(section, (*parent, close[0]))}? " if close else ""
        return (f"unknown {noun}{'s' if len(keys) > 1 else ''} {paths}",
                f"{hint}use only: {', '.join(allowed)}" if allowed else
                "remove it: nothing is accepted here")
    e = errors[0]
    if e["loc"] and e["loc"][-1] == "[key]":  # a key of a mapping with a restricted key type
        key_type = typing.get_args(_strip(_field_at(schema, tuple(e["loc"][:-2]))[0])[0])[0]
        return (f"unknown key {_dotted(section, tuple(e['loc'][:-1]))}",
                f"use {describe(key_type)}")
    tp, info, loc = _field_at(schema, tuple(e["loc"]))
    path = _dotted(section, loc)
    label = (info.title if info is not None and info.title else path) or "the file"
    ctx_error = (e.get("ctx") or {}).get("error")
    if isinstance(ctx_error, Invalid):
        where = _dotted(section, (*loc, ctx_error.key) if ctx_error.key else loc)
        return f"{where}: {ctx_error.problem}" if where else ctx_error.problem, \
            ctx_error.fix or "see the documentation of the file's layout"
    example = _example(info)
    if e["type"] == "missing":
        return f"missing '{path}'", f"add {path}" + (f", e.g. {path}: {example}" if example else "")
    noun = (info.description if info is not None and info.description else None) or describe(tp)
    predicate = noun.removeprefix("a number ") if noun.startswith("a number in ") else noun
    fix = (f"set {path} to {noun}" if path else f"make it {noun}") + \
        (f", e.g. {example}" if example else "")
    value = _value_at(data, loc, e["input"])
    if isinstance(value, str) and "number" in noun and _is_number(value):
        fix += f" (it is quoted text; write it unquoted: {float(value)!r})"
    return f"{label} must be {predicate}, got {_short(value)}", fix


def _field_at(schema: Any, loc: tuple) -> tuple[Any, FieldInfo | None, tuple]:
    """Walk ``loc`` through models and TypedDicts, the values of mappings and the items of
    lists of models, as far as it can: (annotation reached, its FieldInfo, the part of
    ``loc`` walked). A list of plain values is not entered: a bad item reports the list."""
    tp, info, walked = schema, None, ()
    for part in loc:
        fields = _fields(tp)
        if fields is not None:
            if part not in fields:
                break
            info = fields[part]
            tp = Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
        else:
            bare = _strip(tp)[0]
            origin, args = typing.get_origin(bare), typing.get_args(bare)
            mapping = origin in (dict, abc.Mapping)
            if not args or not (mapping or origin in (list, abc.Sequence) and _fields(args[-1])):
                break
            tp, info = args[-1], None  # the value type of a mapping or of a list of models
        walked = (*walked, part)
    return tp, info, walked


def _value_at(data: Any, loc: tuple, fallback: Any) -> Any:
    for part in loc:
        if isinstance(data, dict) and part in data:
            data = data[part]
        elif isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data):
            data = data[part]
        else:
            return fallback
    return data


def _fields(tp: Any) -> dict[str, FieldInfo] | None:
    tp = _strip(tp)[0]
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return dict(tp.model_fields)
    if is_typeddict(tp):
        return {k: FieldInfo.from_annotation(h)
                for k, h in typing.get_type_hints(tp, include_extras=True).items()}
    return None


def _dotted(section: str | None, loc: tuple) -> str:
    return ".".join(str(p) for p in ((section,) if section else ()) + tuple(loc))


def _strip(tp: Any) -> tuple[Any, list, str | None]:
    """(bare type, constraints, description) of an annotation."""
    constraints, description = [], None
    while typing.get_origin(tp) is Annotated:
        tp, *extras = typing.get_args(tp)
        for x in extras:
            if isinstance(x, FieldInfo):
                constraints += x.metadata
                description = description or x.description
            else:
                constraints.append(x)
    return tp, constraints, description


def describe(tp: Any, plural: bool = False) -> str:
    """What a value of annotation ``tp`` must be, in words: "a positive integer", "a number
    in [0, 1]", "avg or sum", "a non-empty string", "a list of positive integers"."""
    tp, constraints, description = _strip(tp)
    if description:
        return description
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, UnionType):
        words = " or ".join(describe(a, plural) for a in args if a is not NoneType)
        return words + (" or null" if NoneType in args else "")
    if origin is Literal:
        words = [str(a) for a in args]
        return ", ".join(words[:-1]) + " or " + words[-1] if len(words) > 1 else words[0]
    if tp is bool:
        return "true or false"
    if tp in (int, float):
        return _number(tp, constraints, plural)
    non_empty = any(isinstance(c, at.MinLen) and c.min_length > 0 for c in constraints)
    if origin in (list, tuple, abc.Sequence) or tp in (list, tuple):
        item = describe(args[0], plural=True) if args else "values"
        noun = ("non-empty " if non_empty else "") + ("lists" if plural else "list")
        return (noun if plural else f"a {noun}") + f" of {item}"
    if origin in (dict, abc.Mapping) or tp in (dict, abc.Mapping) or _fields(tp) is not None:
        return "mappings" if plural else "a mapping"
    names = {str: "string", Path: "path"}
    if tp in names:
        noun = ("non-empty " if non_empty else "") + names[tp]
        return noun + "s" if plural else f"a {noun}"
    return "values" if tp is Any else f"a {getattr(tp, '__name__', tp)}"


def _number(tp: type, constraints: list, plural: bool) -> str:
    noun = {int: ("an integer", "integers"), float: ("a number", "numbers")}[tp][plural]
    lo = hi = None  # (bound, inclusive)
    for c in constraints:
        if isinstance(c, at.Gt):
            lo = (c.gt, False)
        elif isinstance(c, at.Ge):
            lo = (c.ge, True)
        elif isinstance(c, at.Lt):
            hi = (c.lt, False)
        elif isinstance(c, at.Le):
            hi = (c.le, True)
    if hi is None and (lo == (0, False) or (tp is int and lo == (1, True))):
        return ("positive " if plural else "a positive ") + noun.split()[-1]
    if lo and hi:
        return f"{noun} in {'[' if lo[1] else '('}{lo[0]:g}, {hi[0]:g}{']' if hi[1] else ')'}"
    if lo:
        return f"{noun} {'>=' if lo[1] else '>'} {lo[0]:g}"
    if hi:
        return f"{noun} {'<=' if hi[1] else '<'} {hi[0]:g}"
    return noun


def _example(info: FieldInfo | None) -> str:
    if info is None:
        return ""
    if info.examples:
        return _yamlish(info.examples[0])
    default = info.get_default(call_default_factory=True)
    return "" if default in (None, PydanticUndefined) else _yamlish(default)


def _yamlish(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_yamlish(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_yamlish(x)}" for k, x in v.items()) + "}"
    return "null" if v is None else str(v)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _short(v: Any, limit: int = 60) -> str:
    text = repr(v)
    return text if len(text) <= limit else text[:limit - 3] + "..."
