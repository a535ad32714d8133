"""The provider simulator: every API format the gateway speaks (Anthropic
Messages, OpenAI Chat Completions and Responses, the Gemini API, Vertex AI
with Gemini and Claude, AWS Bedrock InvokeModel and Converse), byte-compatible
with the providers' wire formats and fully deterministic.

aperture's tests, benchmarks and embedded default configuration use it as
their upstream. `aperture.sim.server` runs it (`start_simulator`, the
`Simulator` handler); one module per format (`anthropic`, `openai_chat`,
`openai_responses`, `gemini`, `vertex`, `bedrock`) builds its answers as pure
functions of the request, declared as routes (`aperture.sim.routes`) and
listed in `aperture.sim.registry`; `common` holds the token rules they share
and `eventstream` writes AWS event-stream messages. A test computes what the
simulator will report with `expected_usage`.
"""

from __future__ import annotations

from aperture.sim import registry

_USAGE = registry.usage_functions()


def expected_usage(api: str, request: dict, output_tokens: int = 12) -> dict:
    """The usage the simulator answers `request` with, exactly as in its
    non-streaming body (and in the stream's final usage).

    `output_tokens` is the simulator's answer length (`SimSettings.output_tokens`
    or the `x-sim-tokens` header). `request` is the JSON body the format's
    clients send. `api`, and the shape returned:

    ``"anthropic"``, ``"anthropic_messages"``, ``"vertex_anthropic"``, ``"bedrock_invoke"``
        Anthropic's `usage` object: input_tokens, cache_creation_input_tokens,
        cache_read_input_tokens, cache_creation, output_tokens, service_tier.
        A stream's final `message_delta` carries the same input, cache and
        output counts (Bedrock: also its `x-amzn-bedrock-*-token-count`
        headers and the inner `message_stop`'s invocation metrics).
    ``"openai"``, ``"openai_chat"``
        Chat Completions `usage` (prompt_tokens, completion_tokens,
        total_tokens and both details objects), also the stream's usage chunk.
    ``"openai_responses"``, ``"openai_responses_compact"``
        `ResponseUsage`: input_tokens, input_tokens_details {cached_tokens,
        cache_write_tokens}, output_tokens, output_tokens_details
        {reasoning_tokens}, total_tokens; the stream's terminal event carries it.
    ``"gemini"``, ``"vertex_gemini"``
        `usageMetadata`: promptTokenCount, candidatesTokenCount,
        totalTokenCount, promptTokensDetails, and cachedContentTokenCount /
        cacheTokensDetails / thoughtsTokenCount when they apply (Vertex also
        trafficType); the last stream chunk carries it.
    ``"bedrock_converse"``
        Converse `usage`: inputTokens, outputTokens, totalTokens, and
        cacheReadInputTokens / cacheWriteInputTokens with cache points; the
        stream's `metadata` event carries it.

    Each format module's docstring states its rule.
    """
    usage = _USAGE.get(api)
    if usage is None:
        raise ValueError("unknown api %r (expected one of %s)" % (api, ", ".join(sorted(_USAGE))))
    return usage(request, output_tokens)


__all__ = ["expected_usage"]
