"""Mock tools: typed functions over a per-run world, with JSON Schemas taken from their signatures.

A mock tool never touches the network, the file system or a shell: everything it reads or changes
lives in the `World` it is given, which is a deep copy of the scenario's initial state.
"""

from __future__ import annotations

import copy
import inspect
import re
from collections.abc import Callable
from typing import Any, get_type_hints

from pydantic import BaseModel, ConfigDict, ValidationError, create_model
from pydantic.fields import FieldInfo

__all__ = ["ToolError", "ToolModuleError", "World", "MockTool", "mock_tool", "registry", "run_tool", "load_tool_module"]


class ToolError(Exception):
    """An error the model sees as the tool's result (`order not found`); the run goes on."""


class World:
    """The mutable state a scenario's tools share. Top-level keys read as attributes: `world.orders`."""

    def __init__(self, state: dict[str, Any] | None = None):
        object.__setattr__(self, "_state", copy.deepcopy(state or {}))

    def __getattr__(self, name: str) -> Any:
        state = object.__getattribute__(self, "_state")
        if name in state:
            return state[name]
        raise AttributeError(f"the world has no {name!r} (it has: {', '.join(sorted(state)) or 'nothing'})")

    def __setattr__(self, name: str, value: Any) -> None:
        self._state[name] = value

    def __contains__(self, name: str) -> bool:
        return name in self._state

    def get(self, name: str, default: Any = None) -> Any:
        return self._state.get(name, default)

    def setdefault(self, name: str, default: Any) -> Any:
        return self._state.setdefault(name, default)

    def snapshot(self) -> dict[str, Any]:
        """A deep copy of the whole state, for records and end-state checks."""
        return copy.deepcopy(self._state)

    def release(self) -> dict[str, Any]:
        """The state itself, not a copy, once the run is over: the record keeps it and no tool acts on it again."""
        return self._state


_ARG_LINE = re.compile(r"^\s*(\w+)\s*(?:\([^)]*\))?\s*:\s*(.+)$")


def _parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """Split a Google-style docstring into the description and per-argument descriptions."""
    doc = inspect.cleandoc(doc or "")
    head, _, rest = doc.partition("\nArgs:")
    args: dict[str, str] = {}
    current = None
    for line in rest.splitlines():
        if line.strip() and not line.startswith((" ", "\t")):
            break  # the next section (Returns:, Raises:) ends the argument list
        match = _ARG_LINE.match(line)
        if match and (line.startswith("    ") and not line.startswith("        ")):
            current = match.group(1)
            args[current] = match.group(2).strip()
        elif current and line.strip():
            args[current] += " " + line.strip()
    return head.strip(), args


def _simplify(schema: Any) -> Any:
    """Make pydantic's JSON Schema read like a hand-written tool schema: no titles, no `null` branch for optionals."""
    if isinstance(schema, dict):
        # "title" is dropped only as an annotation (a string); a *property* named title is kept
        out = {k: _simplify(v) for k, v in schema.items() if not (k == "title" and isinstance(v, str))}
        branches = out.get("anyOf")
        if isinstance(branches, list):
            non_null = [b for b in branches if b != {"type": "null"}]
            if len(non_null) == 1 and len(branches) == 2:
                out.pop("anyOf")
                if out.get("default", ...) is None:
                    out.pop("default")
                out = {**non_null[0], **out}
        return out
    if isinstance(schema, list):
        return [_simplify(v) for v in schema]
    return schema


def _inline_defs(schema: dict[str, Any]) -> dict[str, Any]:
    """Replace `$ref`s to `$defs` by the definitions: small servers' grammars handle inline schemas best."""
    defs = schema.pop("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return walk(copy.deepcopy(defs[ref.split("/")[-1]]))
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return walk(schema)


class MockTool:
    """A registered mock tool: its function, name, description and argument schema."""

    def __init__(self, fn: Callable[..., Any], *, name: str | None = None, domain: str | None = None):
        self.fn = fn
        self.name = name or fn.__name__
        module = fn.__module__.rsplit(".", 1)[-1]
        if module.startswith("_harness_user_tools_"):  # a user's file, imported by load_tool_module
            module = module[len("_harness_user_tools_"):].rsplit("_", 1)[0]
        self.domain = domain or module
        self.description, arg_docs = _parse_docstring(fn.__doc__ or "")
        if not self.description:
            raise TypeError(f"mock tool {self.name!r} needs a docstring: it is the description the model reads")
        sig = inspect.signature(fn)
        hints = get_type_hints(fn, include_extras=True)
        params = list(sig.parameters.values())
        if not params or params[0].name != "world":
            raise TypeError(f"mock tool {self.name!r}: the first parameter must be `world`")
        fields: dict[str, Any] = {}
        for p in params[1:]:
            if p.name not in hints:
                raise TypeError(f"mock tool {self.name!r}: parameter {p.name!r} needs a type annotation")
            default = ... if p.default is inspect.Parameter.empty else p.default
            info = default if isinstance(default, FieldInfo) else FieldInfo.from_annotated_attribute(hints[p.name], default)
            if info.description is None and p.name in arg_docs:
                info.description = arg_docs[p.name]
            fields[p.name] = (hints[p.name], info)
        self._fields = fields
        self._model: type[BaseModel] | None = None
        self._parameters: dict[str, Any] | None = None
        # the schema's property names are the parameters' unless one is aliased: then only the schema can say
        aliased = any(info.alias or info.validation_alias for _, info in fields.values())
        self._names: list[str] | None = None if aliased else list(fields)

    @property
    def arguments_model(self) -> type[BaseModel]:
        """The pydantic model of the arguments. Built on first use: the 40 built-in tools take about 35 ms
        together and a run's first request needs a few of them (a user's module builds its tools on load)."""
        if self._model is None:
            self._model = create_model(f"{self.name}_arguments", __config__=ConfigDict(extra="forbid"), **self._fields)
        return self._model

    def shared_parameters(self) -> dict[str, Any]:
        """The JSON Schema of the arguments, the one cached object: for reading only (scoring reads it every
        scenario; `parameters` makes a copy for callers that change or hand it on)."""
        return self._schema()

    def _schema(self) -> dict[str, Any]:
        # generating it takes milliseconds and every run asks for it: built once
        if self._parameters is None:
            built = _simplify(_inline_defs(self.arguments_model.model_json_schema()))
            built.setdefault("properties", {})
            built.setdefault("required", [])
            self._parameters = built
        return self._parameters

    def argument_names(self) -> list[str]:
        """The arguments its schema lists, in order (from the signature: the loader asks for every tool's,
        and that needs neither the model nor the schema)."""
        return list(self._names) if self._names is not None else list(self._schema()["properties"])

    def parameters(self, *, strip_descriptions: bool = False) -> dict[str, Any]:
        """The JSON Schema of the arguments (an object schema, `additionalProperties: false`); a copy."""
        schema = copy.deepcopy(self._schema())
        if strip_descriptions:
            for prop in schema["properties"].values():
                prop.pop("description", None)
        return schema

    def openai_schema(self, *, strip_descriptions: bool = False) -> dict[str, Any]:
        """The tool as an OpenAI `tools` entry."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters(strip_descriptions=strip_descriptions),
            },
        }

    def __call__(self, world: World, **arguments: Any) -> Any:
        return self.fn(world, **arguments)

    def __repr__(self) -> str:
        return f"MockTool({self.name!r}, domain={self.domain!r})"


class _Registry:
    """Every mock tool, by name. Domain modules register their tools on import."""

    def __init__(self) -> None:
        self._tools: dict[str, MockTool] = {}

    def add(self, tool: MockTool) -> None:
        existing = self._tools.get(tool.name)
        if existing is not None and existing.fn.__qualname__ != tool.fn.__qualname__:
            raise ValueError(f"two mock tools are named {tool.name!r}: {existing.fn.__module__} and {tool.fn.__module__}")
        self._tools[tool.name] = tool

    def get(self, name: str) -> MockTool | None:
        return self._tools.get(name)

    def __getitem__(self, name: str) -> MockTool:
        tool = self._tools.get(name)
        if tool is None:
            raise KeyError(f"no mock tool {name!r}; known: {', '.join(sorted(self._tools))}")
        return tool

    def names(self) -> list[str]:
        return sorted(self._tools)

    def all(self) -> list[MockTool]:
        return [self._tools[n] for n in self.names()]

    def by_domain(self) -> dict[str, list[MockTool]]:
        out: dict[str, list[MockTool]] = {}
        for tool in self.all():
            out.setdefault(tool.domain, []).append(tool)
        return out


registry = _Registry()


def mock_tool(fn: Callable[..., Any] | None = None, *, name: str | None = None, domain: str | None = None) -> Any:
    """Register a typed function as a mock tool. Use bare (`@mock_tool`) or with a name or domain."""

    def wrap(f: Callable[..., Any]) -> MockTool:
        tool = MockTool(f, name=name, domain=domain)
        registry.add(tool)
        return tool

    return wrap(fn) if fn is not None else wrap


def run_tool(tool: MockTool, world: World, arguments: dict[str, Any]) -> Any:
    """Call a tool with arguments already checked against its schema; returns a JSON-able result.

    Raises `ToolError` for errors the model should see. Anything else is a bug in the mock tool.
    Arguments are validated into their annotated types first, so a parameter typed as a pydantic
    model arrives as that model, not as a dict.
    """
    try:
        validated = tool.arguments_model.model_validate(arguments)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(arguments)'}: {e['msg']}" for e in exc.errors())
        raise ToolError(f"invalid arguments for {tool.name}: {problems}") from None
    return tool(world, **{name: getattr(validated, name) for name in validated.model_fields_set | set(arguments)})


class ToolModuleError(Exception):
    """A user's tool module that cannot be loaded: not found, does not import, or a tool that is not well typed."""


_LOADED: dict[str, list[str]] = {}


def load_tool_module(spec: str, *, base: str | None = None) -> list[str]:
    """Import a user's own mock tools: a `.py` file (relative to `base`) or an importable module name.

    Its `@mock_tool` functions register like the built-ins (schema from signature and docstring;
    the domain is the module's name). Returns the names of its tools. Importing runs the module's
    code, so load only modules you trust. A module is imported once per process.
    """
    import hashlib
    import importlib
    import importlib.util
    import sys
    from pathlib import Path

    is_path = spec.endswith(".py") or "/" in spec or "\\" in spec
    key = str((Path(base or ".") / spec).resolve()) if is_path else spec
    if key in _LOADED:
        return list(_LOADED[key])
    before = set(registry.names())
    try:
        if is_path:
            path = Path(key)
            if not path.is_file():
                raise ToolModuleError(f"no such tool module {spec!r} (looked for {path})")
            name = f"_harness_user_tools_{path.stem}_{hashlib.sha256(key.encode()).hexdigest()[:8]}"
            module_spec = importlib.util.spec_from_file_location(name, path)
            if module_spec is None or module_spec.loader is None:
                raise ToolModuleError(f"{spec!r} cannot be imported as a Python module")
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[name] = module
            try:
                module_spec.loader.exec_module(module)
            except BaseException:
                sys.modules.pop(name, None)
                raise
        else:
            importlib.import_module(spec)
        for name in sorted(set(registry.names()) - before):
            try:
                _ = registry[name].arguments_model  # a type pydantic cannot build fails here, not at the first call
            except Exception as exc:  # noqa: BLE001 (pydantic's schema errors are of several kinds)
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise ToolModuleError(f"tool module {spec!r}: mock tool {name!r} has arguments pydantic cannot validate: "
                                      f"{first}") from None
    except ToolModuleError:
        raise
    except (TypeError, ValueError) as exc:
        # MockTool's own checks (a missing docstring, an untyped parameter, two tools with one name)
        raise ToolModuleError(f"tool module {spec!r}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 (a user's module can fail in any way; say how, without a traceback)
        raise ToolModuleError(f"tool module {spec!r} failed to import: {type(exc).__name__}: {exc}") from None
    added = sorted(set(registry.names()) - before)
    _LOADED[key] = added
    return added
