"""The configuration `aperture serve` uses when it is given none.

It routes to the provider simulator, so a new install answers requests
without any real provider key. Its text is also what a user sees when they
dump the default to start their own file, so the comments explain each part.
"""

from __future__ import annotations

import json

_TEMPLATE = """\
// aperture configuration, written in HuJSON: JSON that also allows
// // line comments, /* block comments */ and trailing commas.
//
// This is the built-in default, used when aperture starts without a config
// file. It sends every request to the provider simulator, so everything works
// before you have any provider keys. To make it yours, save this text to a
// file, edit it, check it with `aperture check-config FILE`, and start
// aperture with that file (see `aperture serve --help`).
{
  // Providers: the upstream APIs aperture forwards requests to. The key
  // ("simulator") is the provider id; a model is also known by its full name
  // "<provider id>/<model>", which grants use.
  "providers": {
    "simulator": {
      "name": "Provider simulator",

      // The upstream root URL. aperture appends the request path to it
      // (/v1/messages, /v1/chat/completions, ...), so leave out "/v1".
      "baseurl": @SIM_URL@,

      // The credential aperture adds to every request it forwards. Clients
      // never hold it: they are known by their tailnet identity instead.
      "apikey": "sim-key",

      // How the key is sent: "bearer" (Authorization: Bearer <key>),
      // "x-api-key" (Anthropic) or "x-goog-api-key" (Gemini).
      "authorization": "bearer",

      // The API formats this provider speaks, which decides the gateway
      // endpoints that serve its models. openai_chat is on by default only
      // when no other format is enabled, so it is listed explicitly here.
      "compatibility": {
        "anthropic_messages": true,  // POST /v1/messages
        "openai_chat": true,         // POST /v1/chat/completions
      },

      // The model names this provider serves. A request's "model" must match
      // one of them exactly.
      "models": [
        "claude-sonnet-4-6",
        "claude-haiku-4-5",
        "claude-opus-4-7",
        "gpt-5.4",
        "gpt-5.4-mini",
      ],
    },
  },

  // Grants: who may do what. Anything no grant allows is denied.
  "grants": [
    {
      // "*" matches everyone who can reach aperture on the tailnet. This
      // grant makes everyone an admin with access to every model, which is
      // handy for a first try. Once you have granted admin to named people
      // (for example "src": ["alice@example.com"]), remove it or reduce it to
      // {"role": "user"} and the models people need: an admin sees every
      // user's requests and can change this configuration.
      "src": ["*"],
      "app": {
        "tailscale.com/cap/aperture": [
          // "admin": settings and everyone's data; "user": one's own data.
          { "role": "admin" },
          // A glob on "<provider id>/<model>": "**" matches every model,
          // "simulator/claude-*" only the Claude models of the simulator.
          { "models": "**" },
        ],
      },
    },
  ],
}
"""


def default_config_text(sim_url: str) -> str:
    """The default HuJSON config, with the simulator at `sim_url`."""
    return _TEMPLATE.replace("@SIM_URL@", json.dumps(sim_url))
