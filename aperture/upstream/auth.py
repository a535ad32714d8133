"""Credentials towards providers, as strategies, and secrets in query strings.

A provider's key reaches the upstream in one header, chosen by its
`authorization` (`Authorization: Bearer <key>`, `x-api-key`, `x-goog-api-key`).
Where the key comes from is the strategy:

- `StaticKey`: the `apikey` of the configuration.
- `CommandKey`: the output of `apikey_command`, run again every
  `apikey_refresh` (default 30 minutes) in the background, for short-lived
  tokens such as Google Cloud access tokens (`gcloud auth
  print-access-token`, valid for an hour). Requests keep using the last good
  token while a new one is fetched; a command that fails is logged (its exit
  status and the end of its stderr, never its output) and tried again at the
  next request after `RETRY_AFTER` seconds. Only when there has never been a
  good token does a request wait for the command, and fail with 502 if it
  fails.

Secrets also travel in query strings: Gemini's `?key=`. `scrub_query` masks
them for records and logs; `drop_query_credentials` removes them from what is
forwarded when the gateway supplies the provider's credentials itself (auth
modes `override` and `none`).
"""

from __future__ import annotations

import asyncio
import logging
import time

from aperture.errors import BadGateway

log = logging.getLogger("aperture.upstream")

#: request headers that carry a client's credentials (SigV4's with them)
CREDENTIAL_HEADERS = frozenset({
    b"authorization", b"x-api-key", b"x-goog-api-key",
    b"x-amz-date", b"x-amz-security-token", b"x-amz-content-sha256",
})
#: query parameters that carry a credential
SECRET_QUERY_PARAMS = frozenset({"key"})
MASK = "[removed]"

_HEADER = {"bearer": b"authorization", "x-api-key": b"x-api-key",
           "x-goog-api-key": b"x-goog-api-key"}
COMMAND_TIMEOUT = 30.0
RETRY_AFTER = 10.0


def _secret_param(part: str) -> bool:
    name = part.partition("=")[0]
    return name in SECRET_QUERY_PARAMS or name.lower() in SECRET_QUERY_PARAMS


def scrub_query(query: str) -> str:
    """`query` with the value of every secret parameter masked."""
    if "key" not in query.lower():
        return query
    return "&".join(part.partition("=")[0] + "=" + MASK if _secret_param(part) else part
                    for part in query.split("&"))


def drop_query_credentials(query: str) -> str:
    """`query` without its secret parameters."""
    if "key" not in query.lower():
        return query
    return "&".join(part for part in query.split("&") if not _secret_param(part))


def key_header(authorization: str, key: str) -> tuple[bytes, bytes]:
    name = _HEADER[authorization]
    value = ("Bearer " + key) if name == b"authorization" else key
    return name, value.encode("latin-1")


#: what `current()` answers when the key must be awaited with `fetch()`
PENDING = object()


class StaticKey:
    __slots__ = ("header",)

    def __init__(self, authorization: str, apikey: str | None) -> None:
        self.header = key_header(authorization, apikey) if apikey else None

    def current(self):
        """The header to send, None for no key, or PENDING."""
        return self.header

    async def fetch(self):
        return self.header

    def start(self) -> None:
        pass


class CommandKey:
    """A key printed by a command, refreshed in the background."""

    def __init__(self, provider_id: str, argv: tuple[str, ...], refresh: float,
                 authorization: str) -> None:
        self.provider_id = provider_id
        self.argv = argv
        self.refresh = refresh
        self.authorization = authorization
        self.header: tuple[bytes, bytes] | None = None
        self.error = ""
        self._fetched = 0.0  # monotonic time of the last good token
        self._tried = -RETRY_AFTER  # monotonic time of the last attempt
        self._task: asyncio.Future | None = None

    def current(self):
        now = time.monotonic()
        if self.header is not None:
            if now - self._fetched >= self.refresh and now - self._tried >= RETRY_AFTER:
                self.start()
            return self.header
        running = self._task is not None and not self._task.done()
        if not running and now - self._tried < RETRY_AFTER:
            raise BadGateway("no credential for provider %s: apikey_command failed (%s)"
                             % (self.provider_id, self.error))
        return PENDING

    async def fetch(self):
        if self.header is None:
            self.start()
            await asyncio.shield(self._task)  # type: ignore[arg-type]
        if self.header is None:
            raise BadGateway("no credential for provider %s: apikey_command failed (%s)"
                             % (self.provider_id, self.error))
        return self.header

    def start(self) -> None:
        """Run the command now, unless it is already running."""
        if self._task is None or self._task.done():
            self._tried = time.monotonic()
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        try:
            proc = await asyncio.create_subprocess_exec(
                *self.argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE)
        except OSError as exc:
            self._failed("cannot run %s: %s" % (self.argv[0], exc.strerror or exc))
            return
        try:
            out, err = await asyncio.wait_for(proc.communicate(), COMMAND_TIMEOUT)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
            self._failed("no answer within %gs" % COMMAND_TIMEOUT)
            return
        token = out.decode("utf-8", "replace").strip()
        if proc.returncode != 0:
            tail = err.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
            self._failed("exit status %d%s" % (proc.returncode, ": " + tail[0][:200] if tail[0] else ""))
        elif not token or any(ord(c) < 0x21 or ord(c) > 0x7E for c in token):
            self._failed("its output is not one line of printable ASCII")
        else:
            self.header = key_header(self.authorization, token)
            self._fetched = time.monotonic()
            self.error = ""

    def _failed(self, reason: str) -> None:
        self.error = reason
        log.error("provider %s: apikey_command failed: %s%s", self.provider_id, reason,
                  "; the previous token is used meanwhile" if self.header is not None else "")


def credential_for(provider):
    """The strategy for a provider's key (see the module docstring)."""
    if provider.apikey_command is not None:
        return CommandKey(provider.id, provider.apikey_command, provider.apikey_refresh,
                          provider.authorization)
    return StaticKey(provider.authorization, provider.apikey)
