"""Grants: who may use which model, compiled once per configuration.

Theory of operation
-------------------
Aperture's access model (reference aperture.md §1.3 and §3) is deny by default
and allow-only: a caller's access is the union of every grant whose `src`
matches them. To use a model a caller needs a role (`user` or `admin`; admin
wins when both match) *and* a model grant whose glob matches the fully
qualified name `provider/model`. A model grant without a role gives nothing.

Two spellings of grants are read:

* `grants` (current): `{"src": [...], "app": {"tailscale.com/cap/aperture":
  [{"role": "user"}, {"models": "anthropic/**"}, ...]}}`, and
  `{"read_metrics": true}`, which lets a caller (a Prometheus server's tag,
  say) read /metrics without a role. Capability objects
  other than `role`, `models` and `read_metrics` (quotas, hooks, connectors, ...) belong to
  other modules and are kept in the document untouched; other `app` keys are
  custom capabilities for hooks and are ignored here.
* `temp_grants` (alpha): `{"src": [...], "grants": [{"role": "admin"},
  {"providers": [{"provider": "anthropic", "model": "*"}]}]}`. Each provider
  entry becomes the glob `provider/model`. A legacy model pattern names the
  whole model, so its `*` also crosses `/` (`openrouter` + `*` matches
  `openrouter/qwen/qwen3-coder`); it is translated to `**`.

Grants from the tailnet policy file. A grant there (with the gateway node in
`dst`) reaches the gateway as a peer capability: WhoIs returns its list of
capability objects in `CapMap`, and the identity carries them
(`Identity.tailnet_grants`, aperture.identity.whois). They are compiled like
the capability list of a config grant whose `src` is the caller, and added to
the config's grants: grants only add, so the same grant in both places gives
nothing more. A capability object that does not compile (a bad role, a glob
that matches no model) is left out with a warning in the log; the others
still apply.

`src` entries: `*` (everyone, tagged nodes included), a login name (compared
case-insensitively), `tag:NAME`, `group:NAME` (matches only when the identity
carries groups, i.e. tailscaled reports them under visible-groups), a SCIM
group written as an email (`engineering@example.com` matches the login or a
group of that name), and `autogroup:member` / `autogroup:tagged`.

Globs on `provider/model`: `*` matches any run of characters except `/`,
`**` any run including `/` (and the empty one), `?` one character except `/`;
everything else is literal. Each glob is compiled to a regular expression at
load time.

Compilation and caching: `Policy.compile` turns the document into a list of
grants with set-based `src` matchers. The first time an identity is seen its
effective access (role plus one combined regex of all its model globs) is
computed and cached; each (identity, provider, model) decision is cached too,
so a repeated check is one dict lookup. Both caches are bounded and evict the
oldest entry first; a new configuration compiles a new Policy with empty
caches, so a decision never outlives the grants it came from.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from aperture.config import path_key, type_name
from aperture.errors import ConfigError

if TYPE_CHECKING:
    from aperture.config import Provider
    from aperture.identity import Identity

__all__ = [
    "APERTURE_CAP",
    "Access",
    "Policy",
    "compile_glob",
    "validate_grants",
    "NO_ROLE",
]

log = logging.getLogger("aperture.policy")

APERTURE_CAP = "tailscale.com/cap/aperture"
ROLES = ("admin", "user")
NO_ROLE = "access denied: no role granted"

_ACCESS_CACHE_SIZE = 4096
_DECISION_CACHE_SIZE = 65536
_MISS = object()


# --- globs -------------------------------------------------------------------


def glob_regex(glob: str) -> str:
    """The regular expression (to be fullmatched) for one FQN glob."""
    out: list[str] = []
    i, n = 0, len(glob)
    while i < n:
        c = glob[i]
        if c == "*":
            if i + 1 < n and glob[i + 1] == "*":
                while i < n and glob[i] == "*":  # "***" reads as "**"
                    i += 1
                out.append(".*")
                continue
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


def compile_glob(glob: str) -> re.Pattern[str]:
    """A compiled pattern; use `.fullmatch("provider/model")`."""
    return re.compile(glob_regex(glob), re.DOTALL)


def _legacy_glob(provider: str, model: str) -> str:
    """`temp_grants` provider/model pair -> current glob (see module docstring)."""
    model_glob = re.sub(r"\*+", "**", model)
    return f"{provider}/{model_glob}"


# --- compiled grants -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Source:
    """The `src` list of one grant, as sets to intersect with an identity."""

    everyone: bool
    logins: frozenset[str]  # lowercased; also matched as SCIM group names
    tags: frozenset[str]  # lowercased, with the "tag:" prefix
    groups: frozenset[str]  # lowercased, without the "group:" prefix
    members: bool  # autogroup:member: any identity with a user
    tagged: bool  # autogroup:tagged: any tagged node

    def matches(self, login: str, tags: frozenset[str], groups: frozenset[str]) -> bool:
        if self.everyone:
            return True
        if login and (login in self.logins or self.members):
            return True
        if tags and (self.tagged or not self.tags.isdisjoint(tags)):
            return True
        if groups and not (self.groups.isdisjoint(groups) and self.logins.isdisjoint(groups)):
            return True
        return False


@dataclass(frozen=True, slots=True)
class _Grant:
    src: _Source
    role: str | None  # "admin" > "user"
    models: tuple[str, ...]  # globs
    read_metrics: bool = False


@dataclass(frozen=True, slots=True)
class Access:
    """What one identity may do under one policy."""

    role: str | None  # "admin" | "user" | None
    models: tuple[str, ...]  # model globs granted (deduplicated, in grant order)
    pattern: re.Pattern[str] | None  # all of them as one regex; None when none
    read_metrics: bool = False  # granted read_metrics (admins may read /metrics anyway)

    def may_use(self, fqn: str) -> bool:
        return self.pattern is not None and self.pattern.fullmatch(fqn) is not None


_NOBODY = Access(role=None, models=(), pattern=None)


def _normalize_groups(groups: Iterable[str]) -> frozenset[str]:
    out = set()
    for g in groups:
        g = g.strip().lower()
        if g.startswith("group:"):
            g = g[6:]
        if g:
            out.add(g)
    return frozenset(out)


# --- parsing and validation ----------------------------------------------------


class _Compiler:
    def __init__(self) -> None:
        self.problems: list[str] = []
        self.grants: list[_Grant] = []

    def problem(self, path: str, message: str) -> None:
        self.problems.append(f"{path}: {message}")

    def source(self, raw: Any, path: str) -> _Source | None:
        path = f"{path}.src"
        if not isinstance(raw, list):
            self.problem(path, f"must be a list of sources, not {type_name(raw)}")
            return None
        ok = True
        everyone = members = tagged = False
        logins: set[str] = set()
        tags: set[str] = set()
        groups: set[str] = set()
        for i, entry in enumerate(raw):
            where = f"{path}[{i}]"
            if not isinstance(entry, str):
                self.problem(where, f"must be a string, not {type_name(entry)}")
                ok = False
                continue
            s = entry.strip()
            low = s.lower()
            if not s:
                self.problem(where, "must not be empty")
                ok = False
            elif s == "*":
                everyone = True
            elif low.startswith("tag:"):
                if len(s) == 4:
                    self.problem(where, "tag: needs a name (tag:NAME)")
                    ok = False
                tags.add(low)
            elif low.startswith("group:"):
                if len(s) == 6:
                    self.problem(where, "group: needs a name (group:NAME)")
                    ok = False
                groups.add(low[6:])
            elif low == "autogroup:member":
                members = True
            elif low == "autogroup:tagged":
                tagged = True
            elif ":" in s.split("@", 1)[0]:
                self.problem(
                    where,
                    'unsupported source; use "*", a login name, "tag:NAME", "group:NAME", '
                    '"autogroup:member" or "autogroup:tagged"',
                )
                ok = False
            else:
                logins.add(low)
        if not ok:
            return None
        return _Source(
            everyone=everyone,
            logins=frozenset(logins),
            tags=frozenset(tags),
            groups=frozenset(groups),
            members=members,
            tagged=tagged,
        )

    def glob(self, value: Any, path: str) -> str | None:
        if not isinstance(value, str):
            self.problem(path, f"must be a glob string, not {type_name(value)}")
            return None
        if not value.strip():
            self.problem(path, "must not be empty")
            return None
        if value != value.strip():
            self.problem(path, "must not start or end with spaces")
            return None
        if "/" not in value and "**" not in value:
            self.problem(
                path,
                "matches no model: globs apply to provider/model (write */NAME for any provider)",
            )
            return None
        return value

    def role(self, value: Any, path: str) -> str | None:
        if value not in ROLES:
            shown = "a string" if isinstance(value, str) else type_name(value)
            self.problem(path, f'must be "admin" or "user" (got {shown})')
            return None
        return value

    def merge_role(self, a: str | None, b: str | None) -> str | None:
        return "admin" if "admin" in (a, b) else (a or b)

    def _entry(self, raw: Any, path: str, fields: str) -> tuple[bool, Any]:
        """(is an object, its compiled src or None) for one grant entry."""
        if not isinstance(raw, dict):
            self.problem(path, f"must be an object with {fields}, not {type_name(raw)}")
            return False, None
        if "src" not in raw:
            self.problem(f"{path}.src", "required")
            return True, None
        return True, self.source(raw["src"], path)

    def current(self, index: int, raw: Any) -> None:
        path = f"grants[{index}]"
        before = len(self.problems)
        is_object, src = self._entry(raw, path, "src and app")
        if not is_object:
            return
        app = raw.get("app")
        role: str | None = None
        models: list[str] = []
        read_metrics = False
        if app is None:
            self.problem(f"{path}.app", f'required (an object with "{APERTURE_CAP}")')
        elif not isinstance(app, dict):
            self.problem(f"{path}.app", f"must be an object, not {type_name(app)}")
        else:
            caps = app.get(APERTURE_CAP)
            cpath = f"{path}.app{path_key(APERTURE_CAP)}"
            if caps is None:
                pass  # only custom capabilities: nothing for aperture itself
            elif not isinstance(caps, list):
                self.problem(cpath, f"must be a list of capability objects, not {type_name(caps)}")
            else:
                for j, cap in enumerate(caps):
                    where = f"{cpath}[{j}]"
                    if not isinstance(cap, dict):
                        self.problem(where, f"must be an object, not {type_name(cap)}")
                        continue
                    if "role" in cap:
                        role = self.merge_role(role, self.role(cap["role"], f"{where}.role"))
                    if "read_metrics" in cap:
                        if not isinstance(cap["read_metrics"], bool):
                            self.problem(f"{where}.read_metrics", "must be true or false, not "
                                         + type_name(cap["read_metrics"]))
                        else:
                            read_metrics = read_metrics or cap["read_metrics"]
                    if "models" in cap:
                        value = cap["models"]
                        if isinstance(value, list):
                            if not value:
                                self.problem(f"{where}.models", "must not be an empty list")
                            for k, item in enumerate(value):
                                g = self.glob(item, f"{where}.models[{k}]")
                                if g is not None:
                                    models.append(g)
                        else:
                            g = self.glob(value, f"{where}.models")
                            if g is not None:
                                models.append(g)
        if len(self.problems) == before and src is not None:
            self.grants.append(_Grant(src=src, role=role, models=tuple(models),
                                      read_metrics=read_metrics))

    def legacy(self, index: int, raw: Any) -> None:
        path = f"temp_grants[{index}]"
        before = len(self.problems)
        is_object, src = self._entry(raw, path, "src and grants")
        if not is_object:
            return
        inner = raw.get("grants")
        role: str | None = None
        models: list[str] = []
        if not isinstance(inner, list):
            self.problem(f"{path}.grants", f"must be a list of grant objects, not {type_name(inner)}")
        else:
            for j, cap in enumerate(inner):
                where = f"{path}.grants[{j}]"
                if not isinstance(cap, dict):
                    self.problem(where, f"must be an object, not {type_name(cap)}")
                    continue
                if "role" in cap:
                    role = self.merge_role(role, self.role(cap["role"], f"{where}.role"))
                if "providers" in cap:
                    entries = cap["providers"]
                    if not isinstance(entries, list):
                        self.problem(
                            f"{where}.providers",
                            f"must be a list of {{provider, model}} objects, not {type_name(entries)}",
                        )
                        continue
                    for k, entry in enumerate(entries):
                        epath = f"{where}.providers[{k}]"
                        if not isinstance(entry, dict):
                            self.problem(epath, f"must be an object with provider and model, not {type_name(entry)}")
                            continue
                        provider = entry.get("provider")
                        model = entry.get("model", "*")
                        good = True
                        if not isinstance(provider, str) or not provider.strip():
                            self.problem(f"{epath}.provider", "must be a provider id or a glob such as *")
                            good = False
                        elif "/" in provider:
                            self.problem(f"{epath}.provider", "must not contain '/'")
                            good = False
                        if not isinstance(model, str) or not model.strip():
                            self.problem(f"{epath}.model", "must be a model name or a glob such as *")
                            good = False
                        if good:
                            models.append(_legacy_glob(provider.strip(), model.strip()))
        if len(self.problems) == before and src is not None:
            self.grants.append(_Grant(src=src, role=role, models=tuple(models)))

    def document(self, document: Any) -> None:
        if not isinstance(document, dict):
            self.problem("top level", f"must be an object, not {type_name(document)}")
            return
        for section, handler in (("grants", self.current), ("temp_grants", self.legacy)):
            raw = document.get(section)
            if raw is None:
                continue
            if not isinstance(raw, list):
                self.problem(section, f"must be a list of grants, not {type_name(raw)}")
                continue
            for i, entry in enumerate(raw):
                handler(i, entry)


def validate_grants(document: Any) -> list[str]:
    """Every problem in the document's `grants` and `temp_grants` (empty when valid)."""
    compiler = _Compiler()
    compiler.document(document)
    return compiler.problems


# --- the policy ------------------------------------------------------------------


class Policy:
    """Compiled grants with decision caches. Build with `Policy.compile(document)`."""

    __slots__ = ("_grants", "_access", "_decisions")

    def __init__(self, grants: Iterable[_Grant] = ()) -> None:
        self._grants: tuple[_Grant, ...] = tuple(grants)
        self._access: dict[Identity, Access] = {}
        self._decisions: dict[tuple[Identity, str, str], str | None] = {}

    @classmethod
    def compile(cls, document: Any) -> Policy:
        """Compile a parsed config document; raises ConfigError listing every problem."""
        compiler = _Compiler()
        compiler.document(document)
        if compiler.problems:
            raise ConfigError(compiler.problems)
        return cls(compiler.grants)

    # Access of one identity: computed once, then cached.

    def access(self, identity: Identity) -> Access:
        found = self._access.get(identity)
        if found is not None:
            return found
        found = self._compute(identity)
        cache = self._access
        if len(cache) >= _ACCESS_CACHE_SIZE:
            _evict_oldest(cache)
        cache[identity] = found
        return found

    def _compute(self, identity: Identity) -> Access:
        login = identity.login.strip().lower()
        tags = frozenset(t.strip().lower() for t in identity.tags)
        groups = _normalize_groups(identity.groups)
        role: str | None = None
        read_metrics = False
        globs: dict[str, None] = {}  # ordered set
        grants = self._grants
        if identity.tailnet_grants:
            grants = grants + tailnet_grants(identity)
        for grant in grants:
            if not grant.src.matches(login, tags, groups):
                continue
            if grant.role == "admin" or role is None:
                role = grant.role or role
            read_metrics = read_metrics or grant.read_metrics
            for g in grant.models:
                globs[g] = None
        if role is None and not globs and not read_metrics:
            return _NOBODY
        pattern = None
        if globs:
            pattern = re.compile("|".join(f"(?:{glob_regex(g)})" for g in globs), re.DOTALL)
        return Access(role=role, models=tuple(globs), pattern=pattern, read_metrics=read_metrics)

    def may_read_metrics(self, identity: Identity) -> bool:
        """Admins, and callers granted read_metrics."""
        access = self.access(identity)
        return access.role == "admin" or access.read_metrics

    def role(self, identity: Identity) -> str | None:
        """"admin", "user" or None."""
        return self.access(identity).role

    def check(self, identity: Identity, provider_id: str, model: str) -> str | None:
        """None when `identity` may use `model` of `provider_id`, else the denial message."""
        # Hot path: one tuple, one dict lookup when the decision is cached.
        key = (identity, provider_id, model)
        decision = self._decisions.get(key, _MISS)
        if decision is not _MISS:
            return decision  # type: ignore[return-value]
        access = self.access(identity)
        if access.role is None:
            decision = NO_ROLE
        else:
            fqn = f"{provider_id}/{model}"
            decision = None if access.may_use(fqn) else f"access denied: model {fqn} not granted"
        cache = self._decisions
        if len(cache) >= _DECISION_CACHE_SIZE:
            _evict_oldest(cache)
        cache[key] = decision
        return decision

    def allowed_models(
        self, identity: Identity, providers: Mapping[str, Provider] | Iterable[Provider]
    ) -> list[tuple[Provider, str]]:
        """Every (provider, model) the identity may use, in config order."""
        access = self.access(identity)
        if access.role is None or access.pattern is None:
            return []
        items = providers.values() if isinstance(providers, Mapping) else providers
        return [(p, m) for p in items for m in p.models if access.may_use(f"{p.id}/{m}")]


def tailnet_grants(identity: Identity) -> tuple[_Grant, ...]:
    """The identity's grants from the tailnet policy file, compiled as grants
    whose `src` is the caller. A capability object that does not compile is
    left out, and the log says why."""
    out = []
    for text in identity.tailnet_grants:
        compiler = _Compiler()
        try:
            cap = orjson.loads(text)
        except orjson.JSONDecodeError:
            cap = text
        compiler.current(0, {"src": ["*"], "app": {APERTURE_CAP: [cap]}})
        if compiler.problems:
            reason = compiler.problems[0].split(": ", 1)[-1]
            log.warning("policy: grant %s from the tailnet policy file for %s ignored: %s",
                        text, identity.principal or identity.node_name or "?", reason)
        out.extend(compiler.grants)
    return tuple(out)


def _evict_oldest(cache: dict) -> None:
    # Dicts keep insertion order: the first key is the oldest entry.
    try:
        del cache[next(iter(cache))]
    except (StopIteration, KeyError, RuntimeError):  # emptied or changed meanwhile
        pass
