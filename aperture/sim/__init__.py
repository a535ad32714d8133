"""The provider simulator: Anthropic Messages and OpenAI Chat Completions,
byte-compatible with the providers' wire formats and fully deterministic.

aperture's tests, benchmarks and embedded default configuration use it as
their upstream. `aperture.sim.server` runs it (`start_simulator`, the
`Simulator` handler); `anthropic` and `openai_chat` build its answers as pure
functions of the request; `common` holds the token rules they share. A test
computes what the simulator will report with `expected_usage`.
"""

from __future__ import annotations

from aperture.sim import anthropic, openai_chat

_APIS = {"anthropic": anthropic, "anthropic_messages": anthropic,
         "openai": openai_chat, "openai_chat": openai_chat}


def expected_usage(api: str, request: dict, output_tokens: int = 12) -> dict:
    """The `usage` object the simulator answers `request` with, exactly as in
    its non-streaming body (and, for OpenAI, in the stream's usage chunk).

    `api` is "anthropic"/"anthropic_messages" or "openai"/"openai_chat";
    `output_tokens` is the simulator's answer length (`SimSettings.output_tokens`
    or the `x-sim-tokens` header). An Anthropic stream's final `message_delta`
    carries the same input, cache and output counts.
    """
    module = _APIS.get(api)
    if module is None:
        raise ValueError("unknown api %r (expected one of %s)" % (api, ", ".join(sorted(_APIS))))
    return module.plan(request, output_tokens).usage


__all__ = ["expected_usage"]
