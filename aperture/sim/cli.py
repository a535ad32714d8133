"""`aperture simulate`: run the provider simulator as a server of its own."""

from __future__ import annotations

import sys

import click


class _SimApp:
    """The simulator as an application of aperture's server (`aperture.ingress.server.App`)."""

    def __init__(self, settings) -> None:
        from aperture.sim.server import Simulator

        self.simulator = Simulator(settings)
        self.handle = self.simulator.handle

    def on_connection(self, conn) -> None:
        pass

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass


@click.command()
@click.option("--listen", default="127.0.0.1:8090", show_default=True,
              help="HOST:PORT to listen on (port 0: any free port).")
@click.option("--latency", default=0.0, show_default=True, type=click.FloatRange(0),
              help="Seconds before each response head.")
@click.option("--token-rate", default=0.0, show_default=True, type=click.FloatRange(0),
              help="Output tokens per second in streams (0: as fast as possible).")
@click.option("--output-tokens", default=12, show_default=True, type=click.IntRange(0),
              help="Answer length in tokens, before a request's max_tokens cap.")
@click.option("--ping-every", default=0, show_default=True, type=click.IntRange(0),
              help="Anthropic streams: a ping every N content deltas (0: one, after the block start).")
@click.option("--require-key", default=None, metavar="KEY",
              help="Refuse requests without this key (x-api-key, Authorization: Bearer, "
                   "x-goog-api-key, ?key=, or a SigV4 access key id). "
                   "Also read from APERTURE_SIMULATE_REQUIRE_KEY.")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 256),
              help="Processes sharing the port (SO_REUSEPORT).")
def simulate(listen, latency, token_rate, output_tokens, ping_every, require_key, workers) -> None:
    """Run the provider simulator: deterministic answers in every API format,
    fault injection with the x-sim-error header.

    \b
    Anthropic Messages   /v1/messages, /v1/messages/count_tokens, /v1/models
    OpenAI Chat          /v1/chat/completions, /v1/embeddings, /v1/models
    OpenAI Responses     /v1/responses (+ /{id}, /{id}/cancel, /{id}/input_items,
                         /input_tokens, /compact)
    Gemini API           /v1beta/models/{m}:generateContent, :streamGenerateContent,
                         :countTokens, :embedContent, :batchEmbedContents (also /v1)
    Vertex AI            /v1/projects/{p}/locations/{l}/publishers/google/models/{m}:...
                         and .../publishers/anthropic/models/{m}:rawPredict,
                         :streamRawPredict, count-tokens:rawPredict
    Bedrock              /model/{id}/invoke, /invoke-with-response-stream,
                         /converse, /converse-stream, /count-tokens

    Any path prefix is accepted before these. Runs until SIGINT or SIGTERM.
    """
    from aperture.ingress.server import parse_listen, serve
    from aperture.sim.server import SimSettings

    try:
        parse_listen(listen)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--listen") from None
    settings = SimSettings(latency=latency, token_rate=token_rate, output_tokens=output_tokens,
                           ping_every=ping_every, require_key=require_key or None)

    async def factory() -> _SimApp:
        return _SimApp(settings)

    # In-flight stalled answers would otherwise hold a shutdown for long.
    sys.exit(serve(factory, listen, workers=workers, drain_timeout=1.0))
