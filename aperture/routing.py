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
3. Otherwise the model is unknown (404), or, when some provider lists it but
   none of them has the flag, the request is refused (400) with a message
   that says which provider serves the model.
"""

from __future__ import annotations

from aperture.config import Config, Provider
from aperture.errors import BadRequest, UnknownModel


class Router:
    __slots__ = ("_exact", "_providers", "_any_format")

    def __init__(self, config: Config) -> None:
        self._providers = config.providers
        self._exact: dict[tuple[str, str], Provider] = {}
        self._any_format: dict[str, list[Provider]] = {}
        for provider in config.providers.values():
            for model in provider.models:
                self._any_format.setdefault(model, []).append(provider)
                for flag in provider.compatibility:
                    self._exact.setdefault((flag, model), provider)

    def route(self, flags: tuple[str, ...], model: str) -> tuple[Provider, str]:
        """(provider, model name to send upstream) or a GatewayError."""
        exact = self._exact
        for flag in flags:
            provider = exact.get((flag, model))
            if provider is not None:
                return provider, model
        prefix, slash, rest = model.partition("/")
        if slash:
            provider = self._providers.get(prefix)
            if provider is not None and rest in provider.models:
                if not provider.compatibility.isdisjoint(flags):
                    return provider, rest
                raise BadRequest("provider %s does not serve the %s API format" % (prefix, flags[0]))
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
