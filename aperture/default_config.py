"""The configuration `aperture serve` uses when it is given none.

It has one provider of each kind (Anthropic, OpenAI, Gemini, Vertex AI,
Bedrock), all routed to the provider simulator, so a new install answers
requests in every API format without any real provider key. Its text is also what a user sees when they
dump the default to start their own file, so the comments explain each part.
"""

from __future__ import annotations

import json

_TEMPLATE = """\
// aperture configuration, written in HuJSON: JSON that also allows
// // line comments, /* block comments */ and trailing commas.
//
// This is the built-in default, used when aperture starts without a config
// file. Every provider below sends its requests to the built-in provider
// simulator, so everything works before you have any provider keys. To make
// it yours, save this text to a file, replace each baseurl and key with the
// real ones (the comments say what they are), delete the providers you do not
// use, check it with `aperture check-config FILE`, and start aperture with
// that file (see `aperture serve --help`).
{
  // Providers: the upstream APIs aperture forwards requests to. The key
  // ("anthropic", "openai", ...) is the provider id; a model is also known by
  // its full name "<provider id>/<model>", which grants use.
  "providers": {
    "anthropic": {
      "name": "Anthropic",
      // The upstream root URL (real: "https://api.anthropic.com"). aperture
      // appends the request path to it (/v1/messages, ...), so leave out "/v1".
      "baseurl": @SIM_URL@,
      // The credential aperture adds to every request it forwards. Clients
      // never hold it: they are known by their tailnet identity instead.
      "apikey": "sim-key",
      // How the key is sent: "bearer" (Authorization: Bearer <key>),
      // "x-api-key" (Anthropic) or "x-goog-api-key" (Gemini).
      "authorization": "x-api-key",
      // The API formats this provider speaks, which decides the gateway
      // endpoints that serve its models.
      "compatibility": {"anthropic_messages": true},  // POST /v1/messages
      // The model names this provider serves. A request's model must match
      // one of them exactly. claude-opus-5-5 is Claude Code's default.
      "models": ["claude-opus-5-5", "claude-sonnet-4-6", "claude-haiku-4-5", "claude-opus-4-7"],
      // Which price table estimates this provider's costs (aperture knows it
      // from a real provider's baseurl; the simulator's needs saying). A
      // "prices" object can set or replace the price of any model.
      "cost_basis": "anthropic",
    },
    "openai": {
      "name": "OpenAI",
      "baseurl": @SIM_URL@,  // real: "https://api.openai.com"
      "apikey": "sim-key",
      "authorization": "bearer",
      // openai_chat is on by default only when no other format is enabled,
      // so it is listed explicitly beside the Responses API (Codex).
      "compatibility": {
        "openai_chat": true,       // POST /v1/chat/completions
        "openai_responses": true,  // POST /v1/responses
      },
      // gpt-6.2-sol is Codex's default.
      "models": ["gpt-6.2-sol", "gpt-5.4", "gpt-5.4-mini", "gpt-5.3-codex"],
      "cost_basis": "openai",
    },
    "gemini": {
      "name": "Google Gemini",
      "baseurl": @SIM_URL@,  // real: "https://generativelanguage.googleapis.com"
      "apikey": "sim-key",
      "authorization": "x-goog-api-key",
      // POST /v1beta/models/<model>:generateContent, :streamGenerateContent, ...
      "compatibility": {"gemini_generate_content": true},
      // Gemini CLI's models: it asks gemini-3.5-flash-lite how hard a prompt
      // is, then sends it to gemini-3.8-flash or gemini-3.1-pro-preview.
      "models": ["gemini-3.1-pro-preview", "gemini-3.8-flash", "gemini-3.5-flash-lite",
                 "gemini-2.5-pro", "gemini-2.5-flash"],
      "cost_basis": "google",
    },
    "vertex": {
      "name": "Vertex AI",
      "baseurl": @SIM_URL@,  // real: "https://aiplatform.googleapis.com"
      // A Google Cloud access token. Such tokens expire after an hour: for a
      // real project use "apikey_command": ["gcloud", "auth",
      // "print-access-token"] instead, which aperture re-runs every 30 minutes.
      "apikey": "sim-key",
      "authorization": "bearer",
      // Clients may write these placeholders in their paths instead of the
      // project and region: _aperture_auto_vertex_project_id_ and
      // _aperture_auto_vertex_region_.
      "vertex_project": "sim-project",
      "vertex_region": "us-east5",
      "compatibility": {
        "google_generate_content": true,  // .../publishers/google/models/<model>:generateContent
        "google_raw_predict": true,       // .../publishers/anthropic/models/<model>:rawPredict
      },
      "models": ["gemini-2.5-pro", "claude-opus-5-5", "claude-sonnet-4-6", "claude-haiku-4-5"],
      "cost_basis": "vertex",
    },
    "bedrock": {
      "name": "Amazon Bedrock",
      "baseurl": @SIM_URL@,  // real: "https://bedrock-runtime.us-east-1.amazonaws.com"
      "apikey": "sim-key",   // a Bedrock API key (no SigV4)
      "authorization": "bearer",
      // Under the /bedrock prefix: POST /bedrock/model/<model id>/invoke,
      // /invoke-with-response-stream, /converse, /converse-stream.
      "compatibility": {"bedrock_model_invoke": true, "bedrock_converse": true},
      // Bedrock model ids, as Bedrock names them. A request may also name
      // one without its region prefix ("us."), vendor prefix ("anthropic.")
      // or version suffix ("-v1:0"), or with another region prefix; its path
      // goes upstream as it was sent.
      "models": [
        "us.anthropic.claude-opus-5-5",
        "us.anthropic.claude-sonnet-4-6",
        "us.anthropic.claude-haiku-4-5",
        "amazon.nova-pro-v1:0",
      ],
      "cost_basis": "bedrock",
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
          // "anthropic/claude-*" only the Claude models of Anthropic.
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
