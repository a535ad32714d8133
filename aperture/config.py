"""The Aperture configuration: HuJSON text -> validated, frozen objects.

The document is one HuJSON object. Only `providers` is turned into objects
here, because routing and the upstream need it on every request; every other
section (`grants`, `temp_grants`, `quotas`, `hooks`, `exporters`, `database`,
`connectors`, `flags`, `model_aliases`, `mcp`, `chat_models`, and keys this
version does not know) is kept in `Config.document` exactly as parsed, for the
module that owns it, and is never a reason to reject the file.

Validation collects every problem instead of stopping at the first, one line
each, starting with the JSON path of the offending value:

    providers.anthropic.authorization: must be one of bearer, x-api-key, x-goog-api-key
    providers.x.models[2]: must be a non-empty string

No problem line, warning or repr ever contains a value from the file: a key
pasted into the wrong field must not end up in a terminal or a log.

Compatibility flags come in two spellings. The beta names are canonical; the
alpha names of the seed documents are accepted and expanded (`gemini` ->
`gemini_generate_content`, `vertex` -> `google_generate_content` +
`google_raw_predict`, `bedrock` -> `bedrock_model_invoke` + `bedrock_converse`);
an explicit beta name wins over an alpha expansion. `openai_chat` is on unless
another API format is enabled, in which case it needs an explicit `true`.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from aperture import hujson
from aperture.errors import ConfigError

__all__ = [
    "FORMAT_FLAGS",
    "COMPATIBILITY_FLAGS",
    "ALPHA_FLAGS",
    "AUTHORIZATION_TYPES",
    "AUTH_MODES",
    "Provider",
    "Config",
    "parse_config",
    "load_config",
    "validate_document",
]

log = logging.getLogger("aperture.config")

# API format -> the compatibility flags that make a provider serve it.
FORMAT_FLAGS: dict[str, frozenset[str]] = {
    "anthropic_messages": frozenset({"anthropic_messages"}),
    "openai_chat": frozenset({"openai_chat"}),
    "openai_responses": frozenset({"openai_responses"}),
    "gemini": frozenset({"gemini_generate_content"}),
    "vertex": frozenset({"google_generate_content", "google_raw_predict"}),
    "bedrock": frozenset({"bedrock_model_invoke", "bedrock_converse"}),
}

# Canonical (beta) flag names. The experimental flag modifies Vertex handling
# and enables no format by itself.
COMPATIBILITY_FLAGS: frozenset[str] = frozenset().union(*FORMAT_FLAGS.values()) | {
    "experimental_gemini_cli_vertex_compat"
}

# Alpha spellings -> the canonical flags they stand for.
ALPHA_FLAGS: dict[str, frozenset[str]] = {
    "gemini": frozenset({"gemini_generate_content"}),
    "vertex": frozenset({"google_generate_content", "google_raw_predict"}),
    "bedrock": frozenset({"bedrock_model_invoke", "bedrock_converse"}),
}

_FORMAT_ENABLING = frozenset().union(*FORMAT_FLAGS.values())
_KNOWN_FLAGS_TEXT = ", ".join(sorted(COMPATIBILITY_FLAGS | ALPHA_FLAGS.keys()))

AUTHORIZATION_TYPES = ("bearer", "x-api-key", "x-goog-api-key")
AUTH_MODES = ("override", "passthrough", "none")

_DEFAULT_PORTS = {"http": 80, "https": 443}
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]+")
_SPACE_OR_CONTROL = re.compile(r"[\s\x00-\x1f\x7f]")
_HEADER_SAFE = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?")


@dataclass(frozen=True, slots=True)
class Provider:
    """One upstream, as routing and the upstream client need it."""

    id: str
    name: str
    description: str
    baseurl: str  # as written
    scheme: str  # "http" | "https"
    host: str  # lowercase; an IPv6 address without brackets
    port: int  # defaulted from the scheme
    base_path: str  # path of baseurl without trailing "/" ("" for a bare host)
    apikey: str | None = field(repr=False)  # never shown
    authorization: str  # "bearer" | "x-api-key" | "x-goog-api-key"
    auth_mode: str  # "override" | "passthrough" | "none"
    models: tuple[str, ...]
    compatibility: frozenset[str]  # enabled flags, canonical names
    tailnet: bool
    cost_basis: str | None = None
    #: argv of a command whose output is the key, re-run every apikey_refresh seconds
    apikey_command: tuple[str, ...] | None = None
    apikey_refresh: float = 1800.0
    #: Vertex: replace the placeholders _aperture_auto_vertex_project_id_ / _region_
    vertex_project: str | None = None
    vertex_region: str | None = None
    #: configured prices: (model or "*", aperture.pricing.Price) pairs
    prices: tuple = ()

    def speaks(self, api_format: str) -> bool:
        """Whether this provider serves `api_format` (a key of FORMAT_FLAGS)."""
        flags = FORMAT_FLAGS.get(api_format)
        return flags is not None and not self.compatibility.isdisjoint(flags)


@dataclass(frozen=True)
class Config:
    """A loaded configuration. `document` and `text` hold secrets: they are
    left out of the repr."""

    providers: dict[str, Provider]  # in config order
    document: dict = field(repr=False)  # the whole parsed document
    text: str = field(repr=False)  # the source text, HuJSON as written
    source: str = "<string>"  # file path, "<default>" or "<string>"
    warnings: tuple[str, ...] = ()  # things worth a look that are not errors


# --- paths ------------------------------------------------------------------


def path_key(name: str) -> str:
    """One step of a JSON path: `.name`, or `["odd name"]` when it needs quoting."""
    if _PLAIN_KEY.fullmatch(name):
        return "." + name
    return "[" + json.dumps(name, ensure_ascii=False) + "]"


def type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


# --- providers --------------------------------------------------------------


class _Checker:
    """Collects problems and warnings while building providers."""

    def __init__(self) -> None:
        self.problems: list[str] = []
        self.warnings: list[str] = []

    def problem(self, path: str, message: str) -> None:
        self.problems.append(f"{path}: {message}")

    def optional_str(self, raw: dict, key: str, path: str) -> str | None:
        value = raw.get(key)
        if value is None:
            return None
        if not isinstance(value, str):
            self.problem(f"{path}.{key}", f"must be a string, not {type_name(value)}")
            return None
        return value

    # Each helper below returns its normalized value, or None after recording a problem.

    def baseurl(self, raw: dict, path: str) -> tuple[str, str, int, str] | None:
        path = f"{path}.baseurl"
        if "baseurl" not in raw:
            self.problem(path, "required")
            return None
        url = raw["baseurl"]
        if not isinstance(url, str):
            self.problem(path, f"must be a string, not {type_name(url)}")
            return None
        if not url:
            self.problem(path, "must not be empty")
            return None
        if _SPACE_OR_CONTROL.search(url):
            self.problem(path, "must not contain spaces or control characters")
            return None
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            self.problem(path, "is not a valid URL")
            return None
        scheme = parts.scheme.lower()
        if scheme not in _DEFAULT_PORTS:
            self.problem(path, "must be an http:// or https:// URL")
            return None
        if not parts.hostname:
            self.problem(path, "must include a host")
            return None
        if "@" in parts.netloc:
            self.problem(path, "must not contain credentials (put the key in apikey)")
            return None
        if "?" in url or "#" in url:
            self.problem(path, "must not contain a query or fragment")
            return None
        if port == 0:
            self.problem(path, "has an invalid port")
            return None
        return scheme, parts.hostname, port or _DEFAULT_PORTS[scheme], parts.path.rstrip("/")

    def models(self, raw: dict, path: str) -> tuple[str, ...] | None:
        path = f"{path}.models"
        if "models" not in raw:
            self.problem(path, "required (list at least one model)")
            return None
        models = raw["models"]
        if not isinstance(models, list):
            self.problem(path, f"must be a list of model names, not {type_name(models)}")
            return None
        if not models:
            self.problem(path, "must list at least one model")
            return None
        ok = True
        seen: dict[str, int] = {}
        for i, model in enumerate(models):
            if not isinstance(model, str) or not model.strip():
                self.problem(f"{path}[{i}]", "must be a non-empty string")
                ok = False
            elif model in seen:
                self.problem(f"{path}[{i}]", f"duplicate of models[{seen[model]}]")
                ok = False
            else:
                seen[model] = i
        return tuple(models) if ok else None

    def auth_type(self, value: Any, path: str) -> str | None:
        if not isinstance(value, str):
            self.problem(path, f"must be a string, not {type_name(value)}")
            return None
        norm = value.strip().lower()
        if norm not in AUTHORIZATION_TYPES:
            self.problem(path, "must be one of " + ", ".join(AUTHORIZATION_TYPES))
            return None
        return norm

    def credentials(self, raw: dict, path: str) -> tuple[str, str | None] | None:
        """(authorization type, api key) from `apikey` and `authorization`."""
        ok = True
        apikey = raw.get("apikey")
        if apikey is not None and not isinstance(apikey, str):
            self.problem(f"{path}.apikey", f"must be a string, not {type_name(apikey)}")
            ok, apikey = False, None
        apikey = apikey or None
        auth = raw.get("authorization")
        kind: str | None = "bearer"
        if auth is None:
            pass
        elif isinstance(auth, str):
            kind = self.auth_type(auth, f"{path}.authorization")
        elif isinstance(auth, dict):
            # Object form of the seed documents: {"type": "x-api-key", "value": "<key>"}.
            kind = "bearer"
            if auth.get("type") is not None:
                kind = self.auth_type(auth["type"], f"{path}.authorization.type")
            value = auth.get("value")
            if value is not None and not isinstance(value, str):
                self.problem(f"{path}.authorization.value", f"must be a string, not {type_name(value)}")
                ok = False
            elif value:
                if apikey is not None and value != apikey:
                    self.problem(
                        f"{path}.authorization.value",
                        "differs from apikey; give the key once, or the same key in both",
                    )
                    ok = False
                apikey = value
        else:
            self.problem(
                f"{path}.authorization",
                f"must be a string or an object with type and value, not {type_name(auth)}",
            )
            ok = False
        if apikey is not None and not _HEADER_SAFE.fullmatch(apikey):
            # The key becomes a header value: no line breaks or other control
            # characters (header injection), and only what HTTP/1.1 can carry.
            where = "apikey" if raw.get("apikey") else "authorization.value"
            self.problem(f"{path}.{where}", "must be printable ASCII (no spaces around it, no control characters)")
            ok = False
        if kind is None or not ok:
            return None
        return kind, apikey

    def key_command(self, raw: dict, path: str) -> tuple[tuple[str, ...] | None, float] | None:
        """(`apikey_command` argv, `apikey_refresh` seconds)."""
        command = raw.get("apikey_command")
        refresh = raw.get("apikey_refresh")
        ok = True
        argv = None
        if command is not None:
            if (not isinstance(command, list) or not command
                    or not all(isinstance(a, str) and a for a in command)):
                self.problem(f"{path}.apikey_command",
                             "must be a non-empty list of non-empty strings (the command and its arguments)")
                ok = False
            elif raw.get("apikey") or (isinstance(raw.get("authorization"), dict)
                                       and raw["authorization"].get("value")):
                self.problem(f"{path}.apikey_command", "give apikey or apikey_command, not both")
                ok = False
            else:
                argv = tuple(command)
        seconds = 1800.0
        if refresh is not None:
            if command is None:
                self.problem(f"{path}.apikey_refresh", "only applies with apikey_command")
                ok = False
            elif not isinstance(refresh, str):
                self.problem(f"{path}.apikey_refresh",
                             f"must be a duration string like \"30m\", not {type_name(refresh)}")
                ok = False
            else:
                from aperture.capture.retention import parse_duration

                try:
                    seconds = parse_duration(refresh)
                except ValueError as e:
                    self.problem(f"{path}.apikey_refresh", str(e))
                    ok = False
                else:
                    if not 60 <= seconds <= 86400:
                        self.problem(f"{path}.apikey_refresh", "must be between 1m and 24h")
                        ok = False
        return (argv, seconds) if ok else None

    def retention(self, database: Any) -> None:
        """`database.retention.duration`, the one part of `database` aperture
        acts on (the rest is kept as it is)."""
        if not isinstance(database, dict) or not isinstance(database.get("retention"), dict):
            return
        duration = database["retention"].get("duration")
        if duration is None:
            return
        path = "database.retention.duration"
        if not isinstance(duration, str):
            self.problem(path, f"must be a string like \"720h\" or \"0\", not {type_name(duration)}")
            return
        from aperture.capture.retention import parse_retention

        try:
            parse_retention(duration)
        except ValueError as e:
            self.problem(path, str(e))

    def prices(self, raw: dict, path: str, cost_basis: str | None, url, compat,
               models) -> tuple:
        """`cost_basis` (one of the shipped price tables) and `prices` (per
        model: rates, or the name of a priced model to price like); see
        aperture.pricing."""
        from aperture import pricing

        if cost_basis is not None and cost_basis not in pricing.bases():
            self.problem(f"{path}.cost_basis", "must be one of " + ", ".join(pricing.bases()))
            return ()
        raw_prices = raw.get("prices")
        if raw_prices is None:
            return ()
        if url is None or models is None or compat is None:
            return ()  # reported already; the prices are checked once those are right
        basis = cost_basis or pricing.infer_basis(url[1], compat)
        problems, prices = pricing.check_prices(raw_prices, f"{path}.prices", basis=basis,
                                                models=models)
        self.problems.extend(problems)
        return prices

    def auth_mode(self, raw: dict, path: str) -> str | None:
        mode = raw.get("auth_mode")
        if mode is None:
            return "override"
        if not isinstance(mode, str):
            self.problem(f"{path}.auth_mode", f"must be a string, not {type_name(mode)}")
            return None
        norm = mode.strip().lower() or "override"
        if norm not in AUTH_MODES:
            self.problem(f"{path}.auth_mode", "must be one of override, passthrough, none (or empty)")
            return None
        return norm

    def compatibility(self, raw: dict, path: str) -> frozenset[str] | None:
        path = f"{path}.compatibility"
        flags = raw.get("compatibility")
        if flags is None:
            flags = {}
        if not isinstance(flags, dict):
            self.problem(path, f"must be an object of true/false flags, not {type_name(flags)}")
            return None
        ok = True
        alpha: dict[str, bool] = {}
        beta: dict[str, bool] = {}
        for name, value in flags.items():
            if name in ALPHA_FLAGS:
                target = alpha
            elif name in COMPATIBILITY_FLAGS:
                target = beta
            else:
                self.problem(f"{path}{path_key(name)}", f"unknown flag (known: {_KNOWN_FLAGS_TEXT})")
                ok = False
                continue
            if not isinstance(value, bool):
                self.problem(f"{path}{path_key(name)}", f"must be true or false, not {type_name(value)}")
                ok = False
                continue
            target[name] = value
        if not ok:
            return None
        enabled: set[str] = set()
        for name, on in alpha.items():
            if on:
                enabled |= ALPHA_FLAGS[name]
        for name, on in beta.items():  # an explicit canonical name wins
            if on:
                enabled.add(name)
            else:
                enabled.discard(name)
        if "openai_chat" not in beta and not (enabled & _FORMAT_ENABLING):
            enabled.add("openai_chat")
        return frozenset(enabled)

    def _in_field_order(self, start: int, raw: dict, path: str) -> None:
        """Sort the problems from `start` on by where their field is in the
        file; problems about missing fields go last."""
        order = {key: i for i, key in enumerate(raw)}
        prefix = len(path) + 1

        def rank(problem: str) -> int:
            if not problem.startswith(path + "."):
                return -1  # about the provider itself (its id)
            field_name = re.split(r"[.\[:]", problem[prefix:], maxsplit=1)[0]
            return order.get(field_name, len(order))

        self.problems[start:] = sorted(self.problems[start:], key=rank)

    def provider(self, pid: str, raw: Any, path: str) -> Provider | None:
        before = len(self.problems)
        if not pid:
            self.problem(path, "provider id must not be empty")
        elif "/" in pid:
            self.problem(path, "provider id must not contain '/'")
        if not isinstance(raw, dict):
            self.problem(path, f"must be an object, not {type_name(raw)}")
            return None
        url = self.baseurl(raw, path)
        models = self.models(raw, path)
        creds = self.credentials(raw, path)
        mode = self.auth_mode(raw, path)
        compat = self.compatibility(raw, path)
        name = self.optional_str(raw, "name", path)
        description = self.optional_str(raw, "description", path)
        cost_basis = self.optional_str(raw, "cost_basis", path)
        vertex_project = self.optional_str(raw, "vertex_project", path)
        vertex_region = self.optional_str(raw, "vertex_region", path)
        for key, value in (("vertex_project", vertex_project), ("vertex_region", vertex_region)):
            if value is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", value):
                self.problem(f"{path}.{key}", "must be a Google Cloud project id or region name "
                                              "(letters, digits, '-', '_' and '.')")
        key_command = self.key_command(raw, path)
        prices = self.prices(raw, path, cost_basis, url, compat, models)
        tailnet = raw.get("tailnet", False)
        if tailnet is None:
            tailnet = False
        if not isinstance(tailnet, bool):
            self.problem(f"{path}.tailnet", f"must be true or false, not {type_name(tailnet)}")
        if len(self.problems) > before:
            self._in_field_order(before, raw, path)
            return None
        assert url and models and creds and mode and compat is not None and key_command
        scheme, host, port, base_path = url
        kind, apikey = creds
        command, refresh = key_command
        if mode == "override" and apikey is None and command is None:
            self.warnings.append(
                f"provider {pid!r}: no apikey, so requests reach it without credentials "
                "(set apikey, or auth_mode passthrough or none)"
            )
        if not (compat & _FORMAT_ENABLING):
            self.warnings.append(
                f"provider {pid!r}: no API format enabled in compatibility, so its models cannot be reached"
            )
        return Provider(
            id=pid,
            name=name or pid,
            description=description or "",
            baseurl=raw["baseurl"],
            scheme=scheme,
            host=host,
            port=port,
            base_path=base_path,
            apikey=apikey,
            authorization=kind,
            auth_mode=mode,
            models=models,
            compatibility=compat,
            tailnet=tailnet,
            cost_basis=cost_basis,
            apikey_command=command,
            apikey_refresh=refresh,
            vertex_project=vertex_project,
            vertex_region=vertex_region,
            prices=prices,
        )


def _check(doc: Any) -> tuple[dict[str, Provider], list[str], list[str]]:
    checker = _Checker()
    providers: dict[str, Provider] = {}
    if not isinstance(doc, dict):
        checker.problem("top level", f"must be an object, not {type_name(doc)}")
        return providers, checker.problems, checker.warnings
    if "providers" in doc:
        section = doc["providers"]
        if not isinstance(section, dict):
            checker.problem("providers", f"must be an object (provider id -> provider), not {type_name(section)}")
        else:
            for pid, raw in section.items():
                provider = checker.provider(pid, raw, f"providers{path_key(pid)}")
                if provider is not None:
                    providers[pid] = provider
    checker.retention(doc.get("database"))
    return providers, checker.problems, checker.warnings


def validate_document(doc: Any) -> list[str]:
    """Every problem in a parsed document (empty when it is valid)."""
    return _check(doc)[1]


# --- duplicate keys ---------------------------------------------------------
# A JSON parser keeps the last of two equal keys; in the provider map that
# silently drops a provider. The standard library's pair hook shows the pairs.


class _Pairs(list):
    """An object as its list of (key, value) pairs, duplicates included."""


def _duplicate_problems(std_text: str) -> list[str]:
    try:
        root = json.loads(std_text, object_pairs_hook=_Pairs)
    except ValueError:  # already reported by the main parser
        return []
    problems: list[str] = []

    def walk(node: Any, path: str, deep: bool) -> None:
        if isinstance(node, list) and not isinstance(node, _Pairs):
            if deep:
                for i, item in enumerate(node):
                    walk(item, f"{path}[{i}]", deep)
            return
        if not isinstance(node, _Pairs):
            return
        seen: set[str] = set()
        for key, value in node:
            step = path_key(key)
            child = path + step if path or step.startswith("[") else step[1:]
            if key in seen:
                problems.append(f"{child}: defined more than once")
            seen.add(key)
            # Below the root, only the providers section is checked deeply;
            # the other sections belong to their own modules.
            if deep or (not path and key == "providers"):
                walk(value, child, True)

    walk(root, "", False)
    return problems


# --- loading ----------------------------------------------------------------


def parse_config(text: str, *, source: str = "<string>", log_warnings: bool = True) -> Config:
    """Parse and validate HuJSON config text.

    Raises ConfigError with every problem found. Warnings (a provider that
    would be called without a key, ...) are logged on "aperture.config" unless
    `log_warnings` is false, and kept in `Config.warnings` either way.
    """
    if text.startswith("\ufeff"):
        text = text[1:]
    try:
        std = hujson.standardize(text)
        doc = hujson.loads(std)
    except hujson.HuJSONError as e:
        raise ConfigError([f"{source}: {e}"]) from None
    providers, problems, warnings = _check(doc)
    problems.extend(_duplicate_problems(std))
    if problems:
        raise ConfigError(problems)
    if log_warnings:
        for warning in warnings:
            log.warning("%s: %s", source, warning)
    return Config(providers=providers, document=doc, text=text, source=source, warnings=tuple(warnings))


def read_config_text(path: str | os.PathLike) -> str:
    """The text of a config file; I/O and encoding errors become ConfigError."""
    source = os.fspath(path)
    try:
        with open(source, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ConfigError([f"{source}: cannot read: {e.strerror or e.__class__.__name__}"]) from None
    try:
        return hujson.decode(data)
    except hujson.HuJSONError as e:
        raise ConfigError([f"{source}: {e}"]) from None


def load_config(path: str | os.PathLike, *, log_warnings: bool = True) -> Config:
    """Read, parse and validate a config file; I/O errors become ConfigError."""
    source = os.fspath(path)
    return parse_config(read_config_text(source), source=source, log_warnings=log_warnings)
