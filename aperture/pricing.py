"""Prices per model, and the estimated cost of one exchange.

Theory of operation
-------------------
The price table (`prices.json`, shipped in the package) has one table per cost
basis, the names of Aperture's `cost_basis` values (`anthropic`, `openai`,
`google`, `vertex`, `bedrock`, `bedrock-us`, `bedrock-eu`, `bedrock-ap`,
`azure`, `azure-eu`, `openrouter`, `vercel`), each listing models with their
rates in US dollars per million tokens, a date and a source. A table may
inherit the models of others (Vertex prices Gemini and Claude as Google and
Anthropic do).

Which price an exchange gets (`PriceBook.price(provider, model)`), first match:

1. the provider's own `prices` in the configuration, for that model, then
   for `"*"`: an object of rates, or the name of a priced model to price
   like (`"gpt-5.4-mini"` in the provider's basis, or `"anthropic/claude-haiku-4-5"`);
2. the provider's table: its `cost_basis`, else the one its base URL names
   (api.anthropic.com, api.openai.com, generativelanguage.googleapis.com,
   *aiplatform.googleapis.com, bedrock-runtime.*.amazonaws.com, openrouter.ai,
   ai-gateway.vercel.sh, *.openai.azure.com), else the one its API formats
   name when they belong to one provider family (Anthropic Messages,
   Gemini, Vertex, Bedrock; never OpenAI's formats, which every
   OpenAI-compatible server speaks, so a self-hosted model never looks like
   it costs OpenAI's prices);
3. none: the exchange has no price ("no price", never $0).

A model is looked up under its own name, then under names with provider
decorations taken off one at a time: a Bedrock ARN's last segment, a Vertex
`@version`, a Bedrock geography (`us.`) and vendor (`anthropic.`) prefix, a
`-v1:0` version, a `-20250929` date, a `-preview`/`-latest` suffix.

Costs are integers in nano-dollars (1e-9 USD), so that sums over millions of
records are exact. When the prompt (input + cache read + cache write) is over
a price's `above.tokens`, the whole request is billed at the `above` rates
(long-context pricing). Reasoning tokens are part of the output. Anthropic's
1-hour cache writes cannot be told apart in usage and are estimated at the
5-minute rate.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from decimal import Decimal
from importlib import resources
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aperture.config import Config, Provider

__all__ = ["Price", "Rates", "PriceBook", "bases", "book_for", "basis_of", "lookup",
           "check_prices", "usd", "pricing_fields"]

RATE_FIELDS = ("input", "output", "cache_read", "cache_write")
_ENTRY_FIELDS = frozenset(RATE_FIELDS + ("cache_write_1h", "above", "date", "source", "note"))
_ABOVE_FIELDS = frozenset(RATE_FIELDS + ("tokens",))
NANO = 1_000_000_000


@dataclass(frozen=True, slots=True)
class Rates:
    """US dollars per million tokens."""

    input: float
    output: float
    cache_read: float
    cache_write: float


@dataclass(frozen=True, slots=True)
class Price:
    basis: str  # "anthropic/claude-sonnet-4-6", or "config" for a configured price
    rates: Rates
    cache_write_1h: float | None = None
    above_tokens: int | None = None
    above: Rates | None = None
    date: str = ""
    source: str = ""
    note: str = ""

    def cost(self, input_tokens: int, output_tokens: int, cache_read: int,
             cache_write: int) -> int:
        """The estimated cost in nano-dollars."""
        r = self.rates
        if self.above is not None and input_tokens + cache_read + cache_write > self.above_tokens:
            r = self.above
        # $/M tokens * tokens = micro-dollars; * 1000 = nano-dollars
        return round((input_tokens * r.input + output_tokens * r.output
                      + cache_read * r.cache_read + cache_write * r.cache_write) * 1000)

    def as_dict(self) -> dict:
        out: dict[str, Any] = {"basis": self.basis}
        for f in RATE_FIELDS:
            out[f] = getattr(self.rates, f)
        if self.cache_write_1h is not None:
            out["cache_write_1h"] = self.cache_write_1h
        if self.above is not None:
            out["above"] = {"tokens": self.above_tokens,
                            **{f: getattr(self.above, f) for f in RATE_FIELDS}}
        out.update(date=self.date, source=self.source)
        if self.note:
            out["note"] = self.note
        return out


def usd(nano: int | None) -> float | None:
    """Nano-dollars as dollars (None stays None)."""
    return None if nano is None else nano / NANO


def _per_token(per_million: float) -> str:
    """A $/M rate as Aperture's per-token decimal string ("0.000003")."""
    d = Decimal(repr(per_million)) / Decimal(1_000_000)
    text = format(d.normalize(), "f")
    return text


def pricing_fields(price: Price) -> dict[str, str]:
    """`/v1/models` `pricing`: per-token USD strings (reference aperture.md §2.1)."""
    r = price.rates
    out = {"input": _per_token(r.input), "input_cache_read": _per_token(r.cache_read),
           "input_cache_write": _per_token(r.cache_write), "output": _per_token(r.output)}
    if price.cache_write_1h is not None:
        out["input_cache_write_1h"] = _per_token(price.cache_write_1h)
    return out


# --- the shipped table -------------------------------------------------------------


class _Problems(list):
    def add(self, path: str, message: str) -> None:
        self.append(f"{path}: {message}")


def _rate(value: Any, path: str, problems: _Problems) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        problems.add(path, "must be a number of US dollars per million tokens")
        return None
    if not value >= 0 or value > 1e6:
        problems.add(path, "must be between 0 and 1000000 (US dollars per million tokens)")
        return None
    return float(value)


def _parse_entry(raw: Any, path: str, problems: _Problems, *, basis: str, default_source: str,
                 note: str = "", need_date: bool) -> Price | None:
    """One price object (the shipped table's entries and the config's)."""
    from aperture.config import path_key, type_name

    if not isinstance(raw, dict):
        problems.add(path, f"must be an object of prices per million tokens (input, output, "
                           f"cache_read, cache_write) or the name of a priced model, not "
                           f"{type_name(raw)}")
        return None
    before = len(problems)
    for key in raw:
        if key not in _ENTRY_FIELDS:
            problems.add(f"{path}{path_key(key)}", "unknown field (known: "
                         + ", ".join(sorted(_ENTRY_FIELDS)) + ")")
    rates: dict[str, float] = {}
    for f in ("input", "output"):
        if f not in raw:
            problems.add(f"{path}.{f}", "required")
        else:
            v = _rate(raw[f], f"{path}.{f}", problems)
            if v is not None:
                rates[f] = v
    for f in ("cache_read", "cache_write", "cache_write_1h"):
        if f in raw:
            v = _rate(raw[f], f"{path}.{f}", problems)
            if v is not None:
                rates[f] = v
    above = above_tokens = None
    if "above" in raw:
        a = raw["above"]
        apath = f"{path}.above"
        if not isinstance(a, dict):
            problems.add(apath, f"must be an object with tokens and the rates above them, not "
                                f"{type_name(a)}")
        else:
            for key in a:
                if key not in _ABOVE_FIELDS:
                    problems.add(f"{apath}{path_key(key)}", "unknown field (known: "
                                 + ", ".join(sorted(_ABOVE_FIELDS)) + ")")
            t = a.get("tokens")
            if isinstance(t, bool) or not isinstance(t, int) or t <= 0:
                problems.add(f"{apath}.tokens", "must be a whole number of prompt tokens above 0")
            else:
                above_tokens = t
            arates = {}
            for f in RATE_FIELDS:
                if f in a:
                    v = _rate(a[f], f"{apath}.{f}", problems)
                    if v is not None:
                        arates[f] = v
                elif f in ("input", "output"):
                    problems.add(f"{apath}.{f}", "required")
            if len(problems) == before:
                above = Rates(arates["input"], arates["output"],
                              arates.get("cache_read", arates["input"]),
                              arates.get("cache_write", arates["input"]))
    for f in ("date", "source", "note"):
        if f in raw and not isinstance(raw[f], str):
            problems.add(f"{path}.{f}", f"must be a string, not {type_name(raw[f])}")
    date = raw.get("date") if isinstance(raw.get("date"), str) else ""
    if date and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", date):
        problems.add(f"{path}.date", "must be a date written YYYY-MM-DD")
    elif need_date and not date:
        problems.add(f"{path}.date", "required")
    if len(problems) > before:
        return None
    return Price(
        basis=basis,
        rates=Rates(rates["input"], rates["output"], rates.get("cache_read", rates["input"]),
                    rates.get("cache_write", rates["input"])),
        cache_write_1h=rates.get("cache_write_1h"), above_tokens=above_tokens, above=above,
        date=date, source=raw.get("source") or default_source,
        note=raw.get("note") or note)


@dataclass(frozen=True)
class _Table:
    name: str
    title: str
    source: str
    note: str
    inherit: tuple[str, ...]
    models: dict  # key -> Price, or str for same_as


@functools.lru_cache(maxsize=1)
def _tables() -> dict[str, _Table]:
    text = resources.files("aperture").joinpath("prices.json").read_text(encoding="utf-8")
    doc = json.loads(text)
    problems = _Problems()
    tables: dict[str, _Table] = {}
    for name, raw in doc["tables"].items():
        models: dict[str, Price | str] = {}
        for key, entry in raw.get("models", {}).items():
            if isinstance(entry, dict) and set(entry) == {"same_as"}:
                models[key] = entry["same_as"]
                continue
            price = _parse_entry(entry, f"prices.json tables.{name}.models[{key!r}]", problems,
                                 basis=f"{name}/{key}", default_source=raw["source"],
                                 note=raw.get("note", ""), need_date=True)
            if price is not None:
                models[key] = price
        tables[name] = _Table(name, raw.get("name", name), raw["source"], raw.get("note", ""),
                              tuple(raw.get("inherit", ())), models)
    for t in tables.values():
        for parent in t.inherit:
            if parent not in tables:
                problems.append(f"prices.json tables.{t.name}.inherit: no table {parent!r}")
    if problems:  # a broken package, not a user error
        raise RuntimeError("the shipped price table is invalid:\n" + "\n".join(problems))
    return tables


def bases() -> tuple[str, ...]:
    return tuple(sorted(_tables()))


# --- lookups ---------------------------------------------------------------------------

_GEO = re.compile(r"^(?:us|us-gov|eu|apac|ap|jp|au|ca|global)\.")
_VENDOR = re.compile(r"^(?:anthropic|amazon|meta|openai|mistral|cohere|ai21|deepseek|qwen|"
                     r"writer|google)\.")
_VERSION = re.compile(r"(?:-v\d+(?::\d+)?|-\d+:\d+|:\d+)$")
_DATE = re.compile(r"-(?:\d{8}|\d{4}-\d{2}-\d{2})$")
_PREVIEW = re.compile(r"-(?:preview(?:-[0-9-]+)?|latest|exp(?:-[0-9-]+)?)$")


def _candidates(model: str) -> list[str]:
    out = [model]

    def add(name: str) -> str:
        if name and name not in out:
            out.append(name)
        return name

    m = model
    if m.startswith("arn:"):
        m = add(m.rsplit("/", 1)[-1])
    m = add(m.split("@", 1)[0])
    m = add(_GEO.sub("", m))
    m = add(_VENDOR.sub("", m))
    m = add(_VERSION.sub("", m))
    m = add(_DATE.sub("", m))
    m = add(_VERSION.sub("", m))
    add(_PREVIEW.sub("", m))
    for name in list(out):
        add(name.lower())
    return out


def _find(table: _Table, name: str, tables: dict, seen: set) -> tuple[str, Price] | None:
    found = table.models.get(name)
    if isinstance(found, str):
        found = table.models.get(found)
    if isinstance(found, Price):
        return name, found
    for parent in table.inherit:
        if parent in seen:
            continue
        seen.add(parent)
        hit = _find(tables[parent], name, tables, seen)
        if hit is not None:
            return hit
    return None


def lookup(basis: str, model: str) -> Price | None:
    """The shipped price of `model` in table `basis` (None when unknown)."""
    return _lookup(basis, model)


@functools.lru_cache(maxsize=4096)
def _lookup(basis: str, model: str) -> Price | None:
    tables = _tables()
    table = tables.get(basis)
    if table is None or not model:
        return None
    for name in _candidates(model):
        hit = _find(table, name, tables, {basis})
        if hit is None:
            continue
        key, price = hit
        if price.basis == f"{basis}/{key}":
            return price
        # Inherited: the same rates, under this table's name and source.
        return Price(basis=f"{basis}/{key}", rates=price.rates,
                     cache_write_1h=price.cache_write_1h, above_tokens=price.above_tokens,
                     above=price.above, date=price.date,
                     source=table.source, note=table.note or price.note)
    return None


def infer_basis(host: str, compatibility: frozenset[str] | set[str]) -> str | None:
    """The table a provider's base URL host (or its API formats) names."""
    host = host.lower().rstrip(".")
    if host == "api.anthropic.com":
        return "anthropic"
    if host == "api.openai.com":
        return "openai"
    if host == "generativelanguage.googleapis.com":
        return "google"
    if host == "aiplatform.googleapis.com" or host.endswith("-aiplatform.googleapis.com"):
        return "vertex"
    if host.startswith("bedrock-runtime.") and host.endswith(".amazonaws.com"):
        region = host.split(".")[1]
        return {"us": "bedrock-us", "eu": "bedrock-eu", "ap": "bedrock-ap"}.get(
            region.split("-")[0], "bedrock")
    if host == "openrouter.ai":
        return "openrouter"
    if host == "ai-gateway.vercel.sh":
        return "vercel"
    if host.endswith((".openai.azure.com", ".services.ai.azure.com",
                      ".cognitiveservices.azure.com")):
        return "azure"
    families = set()
    for flag in compatibility:
        if flag == "anthropic_messages":
            families.add("anthropic")
        elif flag == "gemini_generate_content":
            families.add("google")
        elif flag.startswith("google_"):
            families.add("vertex")
        elif flag.startswith("bedrock_"):
            families.add("bedrock")
        elif flag.startswith("openai_"):
            return None
    return families.pop() if len(families) == 1 else None


def basis_of(provider: Provider) -> str | None:
    """The cost basis a provider's prices come from (see the module docstring)."""
    return provider.cost_basis or infer_basis(provider.host, provider.compatibility)


# --- the configuration's prices ----------------------------------------------------------


def check_prices(raw: Any, path: str, *, basis: str | None,
                 models: tuple[str, ...]) -> tuple[list[str], tuple[tuple[str, Price], ...]]:
    """Validate a provider's `prices` map; (problems, (model or "*", Price) pairs)."""
    from aperture.config import path_key, type_name

    problems = _Problems()
    if not isinstance(raw, dict):
        problems.add(path, f"must be an object (model name or \"*\" -> price), not "
                           f"{type_name(raw)}")
        return problems, ()
    known = set(models)
    out = []
    tables = _tables()
    for key, value in raw.items():
        where = f"{path}{path_key(key)}"
        if key != "*" and key not in known:
            problems.add(where, "is not one of this provider's models (use \"*\" for all the "
                                "others)")
            continue
        if isinstance(value, str):
            ref_basis, sep, ref_model = value.partition("/")
            if not sep or ref_basis not in tables:
                ref_basis, ref_model = basis, value
            price = lookup(ref_basis, ref_model) if ref_basis else None
            if price is None:
                if ref_basis is None:
                    problems.add(where, f"{value!r} names no cost basis; write it as "
                                        "BASIS/MODEL (bases: " + ", ".join(sorted(tables)) + ")")
                else:
                    problems.add(where, f"no price for {ref_model!r} in the {ref_basis} table")
                continue
            out.append((key, price))
            continue
        price = _parse_entry(value, where, problems, basis="config", default_source="configuration",
                             need_date=False)
        if price is not None:
            out.append((key, price))
    return problems, tuple(out)


# --- per configuration ------------------------------------------------------------------------


class PriceBook:
    """Prices for one configuration: `price(provider id, model)` -> Price or None."""

    def __init__(self, config: Config) -> None:
        self._providers = config.providers
        self._cache: dict[tuple[str, str], Price | None] = {}

    def price(self, provider_id: str, model: str) -> Price | None:
        key = (provider_id, model)
        try:
            return self._cache[key]
        except KeyError:
            pass
        provider = self._providers.get(provider_id)
        found = None
        if provider is not None and model:
            configured = dict(provider.prices)
            found = configured.get(model) or configured.get("*")
            if found is None:
                basis = basis_of(provider)
                if basis is not None:
                    found = lookup(basis, model)
        if len(self._cache) > 8192:
            self._cache.clear()
        self._cache[key] = found
        return found

    def cost(self, provider_id: str, model: str, usage) -> int | None:
        """Nano-dollars for `usage` (aperture.capture.record.Usage), None without a price."""
        price = self.price(provider_id, model)
        if price is None:
            return None
        return price.cost(usage.input_tokens, usage.output_tokens, usage.cache_read_tokens,
                          usage.cache_write_tokens)


_last: tuple[Any, PriceBook] | None = None


def book_for(config: Config) -> PriceBook:
    """The PriceBook of `config`, made once per configuration object. The
    price tables are read here, when a configuration is loaded, not at the
    first priced request (when no file descriptor may be left to read them)."""
    global _last
    _tables()
    last = _last
    if last is not None and last[0] is config:
        return last[1]
    book = PriceBook(config)
    _last = (config, book)
    return book
