"""Which provider serves a model for a request's API action.

A request needs a provider with one of its route's compatibility flags
(`Route.flags`: `openai_chat`, `google_raw_predict`, ...). Rules, in order
(README, "Routing"):
1. A provider that lists the model exactly and has the flag; when several
   do, the first in the configuration wins.
2. The fully qualified form `provider/model`: the provider with that id, if it
   lists `model` and has the flag. The prefix is removed before the request
   is forwarded. (Rule 1 comes first so that model names which contain a
   slash themselves, like OpenRouter's `qwen/qwen3-coder`, still match.)
3. For the Bedrock flags only: the model id and the listed ids compared
   without an inference profile's region prefix (`us.`, `eu.`, `apac.`,
   `global.`...), the vendor prefix (`anthropic.`) and the version suffix
   (`-v1:0`, `-20250514-v1:0`), so `us.anthropic.claude-sonnet-4-6`,
   `anthropic.claude-sonnet-4-6-v1:0` and `claude-sonnet-4-6` find a provider
   that lists any one of them. The client's path is forwarded as it was sent
   (Claude Code names the inference profile it wants); grants are checked on
   the listed name.
4. Otherwise the request is refused with 400 when no provider has the flag
   at all (a path of a format this gateway does not speak), else the model is
   unknown (404), or, when some provider lists it but none of them has the
   flag, 400 with a message that says which provider serves the model.
"""

from __future__ import annotations

import re

from aperture.config import Config, Provider
from aperture.errors import BadRequest, UnknownModel


BEDROCK_FLAGS = frozenset({"bedrock_model_invoke", "bedrock_converse"})
# Cross-region inference profiles: reference/wire-formats.md §6.
_REGION_PREFIXES = ("global.", "us.", "us-gov.", "eu.", "apac.", "jp.", "au.", "ca.")
_VENDOR = re.compile(r"[a-z][a-z0-9-]*\.")
_VERSION = re.compile(r"(?:-\d{8})?-v\d+(?::\d+)?\Z")


def bedrock_base_id(model: str) -> str:
    """A Bedrock model id without its region prefix, vendor prefix and version
    suffix: `us.anthropic.claude-sonnet-4-6-20250514-v1:0` -> `claude-sonnet-4-6`.
    An ARN is read by its last segment (`.../inference-profile/us.anthropic...`)."""
    if model.startswith("arn:"):
        model = model.rpartition("/")[2]
    model = without_region(model)
    vendor = _VENDOR.match(model)
    if vendor is not None:
        model = model[vendor.end():]
    return _VERSION.sub("", model)


def without_region(model: str) -> str:
    """A Bedrock id without an inference profile's region prefix."""
    for prefix in _REGION_PREFIXES:
        if model.startswith(prefix):
            return model[len(prefix):]
    return model


class Router:
    __slots__ = ("_exact", "_providers", "_any_format", "_bedrock")

    def __init__(self, config: Config) -> None:
        self._providers = config.providers
        self._exact: dict[tuple[str, str], Provider] = {}
        self._any_format: dict[str, list[Provider]] = {}
        # (Bedrock flag, base id) -> (provider, listed id), first in config order
        self._bedrock: dict[tuple[str, str], tuple[Provider, str]] = {}
        for provider in config.providers.values():
            bedrock = provider.compatibility & BEDROCK_FLAGS
            for model in provider.models:
                self._any_format.setdefault(model, []).append(provider)
                for flag in provider.compatibility:
                    self._exact.setdefault((flag, model), provider)
                if bedrock:
                    base = bedrock_base_id(model)
                    for flag in bedrock:
                        self._bedrock.setdefault((flag, base), (provider, model))

    def route(self, flags: tuple[str, ...], model: str) -> tuple[Provider, str]:
        """(provider, model name to send upstream) or a GatewayError."""
        provider, upstream, _ = self.resolve(flags, model)
        return provider, upstream

    def resolve(self, flags: tuple[str, ...], model: str) -> tuple[Provider, str, str]:
        """(provider, model name to send upstream, the name the provider lists,
        which grants are checked on) or a GatewayError."""
        exact = self._exact
        for flag in flags:
            provider = exact.get((flag, model))
            if provider is not None:
                return provider, model, model
        prefix, slash, rest = model.partition("/")
        if slash:
            provider = self._providers.get(prefix)
            if provider is not None and rest in provider.models:
                if not provider.compatibility.isdisjoint(flags):
                    return provider, rest, rest
                raise BadRequest("provider %s does not serve the %s API format" % (prefix, flags[0]))
        if self._bedrock and not BEDROCK_FLAGS.isdisjoint(flags):
            base = bedrock_base_id(model)
            for flag in flags:
                found = self._bedrock.get((flag, base))
                if found is not None:
                    return found[0], model, found[1]
        if not self.speakers(flags):
            raise BadRequest("no provider of this gateway speaks the %s API format (asked for "
                             "model %s)" % (flags[0], model))
        listed = self._any_format.get(model)
        if listed:
            names = ", ".join(p.id for p in listed)
            raise BadRequest("model %s is served by %s, which does not speak the %s API format"
                             % (model, names, flags[0]))
        raise UnknownModel("model %s not found (GET /v1/models lists the models you may use)"
                           % model)

    def speakers(self, flags: tuple[str, ...]) -> list[Provider]:
        """The providers that have one of `flags`, in config order."""
        return [p for p in self._providers.values() if not p.compatibility.isdisjoint(flags)]
