"""The JSON Schema of the Customer API's request bodies, compiled once into validators.

The schema (``customer_api_requests.schema.json``, shipped in the package) is the one the emulator
enforces and the contract test checks the client's requests against. ``jsonschema`` is the
reference validator; it is an optional dependency (the ``emulator`` extra), imported when the
validators are first compiled, not when this module is.

jsonschema takes about 200 µs for the smallest activity body (and about 30 µs more per activity),
more than the emulator's whole ~150 µs of CPU per request: it would halve the emulator's throughput
in the benchmarks. So the emulator asks :func:`compile_checks`' predicates, the same schema compiled
into closures (about 4 µs for that body), and asks jsonschema only to explain a refused body. The compiler knows only the keywords
the schema uses and raises on any other, and a property test holds it to jsonschema's verdicts.
"""

from __future__ import annotations

import functools
import importlib.resources
import re
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

import orjson

if TYPE_CHECKING:
    from jsonschema.exceptions import ValidationError as SchemaError
    from jsonschema.protocols import Validator

__all__ = [
    "BODIES",
    "SCHEMA_FILE",
    "compile_checks",
    "compile_validators",
    "describe",
    "is_date_time",
    "is_uuid",
    "load_schema",
]

SCHEMA_FILE: Final = "customer_api_requests.schema.json"
# Request body name -> its definition in the schema's $defs.
BODIES: Final = {
    "activity": "ActivityRequest",
    "structure": "StructureRequest",
    "delete": "DeleteRequest",
}
INSTALL_HINT: Final = 'the MXO emulator needs jsonschema: pip install "mxo-async[emulator]"'

# RFC 3339 date-time (JSON Schema's "date-time"): a date, "T", a time with seconds, optional
# fraction, and "Z" or a numeric offset. fromisoformat then rejects impossible dates (02-30).
_DATE_TIME = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})", re.ASCII
)
# Any UUID version digit: MXO's TIDs are UUID-shaped, not UUIDv4 (docs/wire-contract.md).
_UUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}", re.ASCII)


def is_date_time(value: object) -> bool:
    """True for an RFC 3339 date-time string (non-strings pass: ``type`` checks those)."""
    if not isinstance(value, str):
        return True
    if not _DATE_TIME.fullmatch(value):
        return False
    try:
        datetime.fromisoformat(value.upper())
    except ValueError:
        return False
    return True


def is_uuid(value: object) -> bool:
    """True for an 8-4-4-4-12 hexadecimal string (non-strings pass: ``type`` checks those)."""
    return not isinstance(value, str) or _UUID.fullmatch(value) is not None


def load_schema() -> dict[str, Any]:
    """The schema document, as shipped in the package."""
    text = importlib.resources.files(__package__).joinpath(SCHEMA_FILE).read_bytes()
    schema: dict[str, Any] = orjson.loads(text)
    return schema


@functools.cache
def compile_validators() -> Mapping[str, Validator]:
    """One compiled Draft 2020-12 validator per request body (see :data:`BODIES`), with formats.

    Compiled once per process: every emulator (and the contract test) shares them.

    Raises:
        ImportError: ``jsonschema`` is not installed (the message says how to install it).
    """
    try:
        from jsonschema import Draft202012Validator, FormatChecker
    except ImportError as exc:
        raise ImportError(INSTALL_HINT) from exc
    # Our own format checks: jsonschema's "date-time" silently passes without an extra package.
    checker = FormatChecker(formats=())
    checker.checks("date-time")(is_date_time)
    checker.checks("uuid")(is_uuid)
    schema = load_schema()
    Draft202012Validator.check_schema(schema)
    validators: dict[str, Validator] = {}
    for body, definition in BODIES.items():
        root = dict(schema, **{"$ref": f"#/$defs/{definition}"})
        validators[body] = Draft202012Validator(root, format_checker=checker)
    return validators


# How each failed keyword is described. Messages name members and limits, never the values sent
# (jsonschema's own messages quote the instance, which may be a customer identifier).
_KEYWORD: Final[Mapping[str, Callable[[SchemaError], str]]] = {
    "type": lambda e: f"must be of type {e.validator_value}",
    "required": lambda e: e.message,  # "'x' is a required property": a member name
    "additionalProperties": lambda e: e.message,  # "... ('x' was unexpected)": member names
    "enum": lambda e: "must be one of " + ", ".join(map(str, _listed(e.validator_value))),
    "minItems": lambda e: f"must hold at least {e.validator_value} item(s)",
    "maxItems": lambda e: f"must hold at most {e.validator_value} items",
    "minLength": lambda e: "must not be empty",
    "maxLength": lambda e: f"must be at most {e.validator_value} characters",
    "format": lambda e: f"must be a valid {e.validator_value}",
    "not": lambda e: "must not contain whitespace",
    "minProperties": lambda e: "must name the customer by a tid or an identifier",
    "maxProperties": lambda e: "must name the customer by one of tid or identifier, not both",
    "anyOf": lambda e: "must name the customer by a tid or at least one identifier",
}


def _listed(value: object) -> list[object]:
    return list(value) if isinstance(value, list) else []


def describe(error: SchemaError) -> str:
    """A short message for a schema violation: where (a JSON path) and what is wrong."""
    explain = _KEYWORD.get(str(error.validator))
    what = explain(error) if explain is not None else f"fails the schema's {error.validator!r}"
    return f"{error.json_path}: {what}"


# -- the fast predicates ---------------------------------------------------------------------------

Check = Callable[[object], bool]
_ANNOTATIONS: Final = frozenset({"$schema", "$id", "$comment", "$defs", "title", "description"})
_TYPES: Final[Mapping[str, tuple[type, ...]]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "number": (int, float),  # exact types: JSON's true is a bool, never a number
    "boolean": (bool,),
    "null": (type(None),),
}
_FORMATS: Final[Mapping[str, Check]] = {"date-time": is_date_time, "uuid": is_uuid}


@functools.cache
def compile_checks() -> Mapping[str, Check]:
    """One predicate per request body (see :data:`BODIES`): True when the schema accepts it.

    Works on parsed JSON (exact ``dict``/``list``/``str``/``int``/``float``/``bool``/``None``).

    Raises:
        ValueError: the schema uses a keyword this compiler does not know.
    """
    schema = load_schema()
    compiler = _Compiler(schema.get("$defs", {}))
    return {body: compiler.ref(f"#/$defs/{name}") for body, name in BODIES.items()}


class _Compiler:
    """Compiles schema nodes into predicates; a ``$ref`` is compiled once and shared.

    Each node becomes as few closures as possible (a call costs more than the check it makes):
    ``type`` is folded into the object, array or string check of that type.
    """

    def __init__(self, defs: Mapping[str, Any]) -> None:
        self._defs = defs
        self._compiled: dict[str, Check] = {}

    def ref(self, ref: str) -> Check:
        prefix = "#/$defs/"
        if not ref.startswith(prefix) or ref[len(prefix) :] not in self._defs:
            raise ValueError(f"unsupported $ref {ref!r}: only {prefix}NAME")
        name = ref[len(prefix) :]
        if name not in self._compiled:
            compiled = self._compiled
            compiled[name] = lambda value: compiled[name](value)  # until compiled: recursion
            compiled[name] = self.node(self._defs[name])
        return self._compiled[name]

    def node(self, node: Mapping[str, Any]) -> Check:
        unknown = set(node) - _ANNOTATIONS - _KEYWORDS
        if unknown:
            raise ValueError(f"schema keywords the emulator cannot compile: {sorted(unknown)}")
        checks: list[Check] = []
        if "$ref" in node:
            checks.append(self.ref(node["$ref"]))
        kind = node.get("type")
        if kind is not None and kind not in _TYPES:
            raise ValueError(f"unsupported type {kind!r}")
        typed = False  # whether a check below already rejects values of other types
        for make, its_kind in (
            (self._object, "object"),
            (self._array, "array"),
            (_string, "string"),
        ):
            check = make(node, kind == its_kind)
            if check is not None:
                checks.append(check)
                typed = typed or kind == its_kind
        if "enum" in node:
            checks.append(_enum(node["enum"]))
            typed = typed or kind == "string"
        if kind is not None and not typed:
            allowed = _TYPES[kind]
            checks.append(lambda value: type(value) in allowed)
        if "not" in node:
            negated = self.node(node["not"])
            checks.append(lambda value: not negated(value))
        if "anyOf" in node:
            checks.append(_any(tuple(self.node(sub) for sub in node["anyOf"])))
        return _all(checks)

    def _object(self, node: Mapping[str, Any], typed: bool) -> Check | None:
        if not typed and _OBJECT.isdisjoint(node):
            return None
        properties = {name: self.node(sub) for name, sub in node.get("properties", {}).items()}
        required = tuple(node.get("required", ()))
        additional = node.get("additionalProperties", True)
        if additional not in (True, False):
            raise ValueError("additionalProperties must be true or false here")
        allowed = None if additional else frozenset(properties)
        least, most = node.get("minProperties", 0), node.get("maxProperties")

        def check(value: object) -> bool:
            if type(value) is not dict:
                return not typed
            if len(value) < least or (most is not None and len(value) > most):
                return False
            for name in required:
                if name not in value:
                    return False
            if allowed is not None and not allowed.issuperset(value):
                return False
            for name, member in value.items():
                sub = properties.get(name)
                if sub is not None and not sub(member):
                    return False
            return True

        return check

    def _array(self, node: Mapping[str, Any], typed: bool) -> Check | None:
        if not typed and _ARRAY.isdisjoint(node):
            return None
        item = self.node(node["items"]) if "items" in node else None
        least, most = node.get("minItems", 0), node.get("maxItems")

        def check(value: object) -> bool:
            if type(value) is not list:
                return not typed
            if len(value) < least or (most is not None and len(value) > most):
                return False
            if item is not None:
                for member in value:
                    if not item(member):
                        return False
            return True

        return check


_OBJECT: Final = frozenset(
    {"properties", "required", "additionalProperties", "minProperties", "maxProperties"}
)
_ARRAY: Final = frozenset({"items", "minItems", "maxItems"})
_STRING: Final = frozenset({"minLength", "maxLength", "pattern", "format"})
_KEYWORDS: Final = _OBJECT | _ARRAY | _STRING | {"$ref", "type", "enum", "not", "anyOf"}


def _string(node: Mapping[str, Any], typed: bool) -> Check | None:
    if not typed and _STRING.isdisjoint(node):
        return None
    least, most = node.get("minLength", 0), node.get("maxLength")
    pattern = re.compile(node["pattern"]) if "pattern" in node else None
    form = _FORMATS[node["format"]] if "format" in node else None

    def check(value: object) -> bool:
        if type(value) is not str:
            return not typed
        return (
            len(value) >= least
            and (most is None or len(value) <= most)
            and (pattern is None or pattern.search(value) is not None)
            and (form is None or form(value))
        )

    return check


def _enum(values: list[object]) -> Check:
    if not all(isinstance(v, str) for v in values):
        raise ValueError("only enums of strings are supported")
    allowed = frozenset(values)
    return lambda value: type(value) is str and value in allowed


def _any(choices: tuple[Check, ...]) -> Check:
    def check(value: object) -> bool:
        for choice in choices:  # noqa: SIM110 - any(genexp) costs a generator per call
            if choice(value):
                return True
        return False

    return check


def _all(checks: list[Check]) -> Check:
    if not checks:
        return lambda value: True
    if len(checks) == 1:
        return checks[0]
    frozen = tuple(checks)

    def check(value: object) -> bool:
        for one in frozen:  # noqa: SIM110 - all(genexp) costs a generator per call
            if not one(value):
                return False
        return True

    return check
