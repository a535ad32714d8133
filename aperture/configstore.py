"""The running configuration, and how an admin reads and replaces it.

Theory of operation
-------------------
State. The store holds one `(Config, Policy)` tuple in `current`. A request
takes that tuple once when it starts and keeps it to the end, so swapping in
a new tuple (one attribute assignment, atomic) never changes the grants or
providers under a request already on its way (issue 4, item 4). `hash` is the
sha256 of the running text and serves as the optimistic-concurrency token of
`GET`/`PUT /api/config` (reference aperture.md §2.3).

Secrets. Provider keys live in the text as `providers.<id>.apikey` and
`providers.<id>.authorization.value` (object form). `get()` replaces each such
string literal with the mask `"********"`. The spans are found in
`hujson.standardize(text)`, which blanks comments and trailing commas without
moving a character, so the offsets are those of the text as written and
comments and layout stay as they are. A current key that also appears
elsewhere in the text (a commented-out line, say) is masked there too.
On `put()`, a mask still sitting at one of those places stands for the key
the provider with that id has now; a mask on a provider that has no key
today is a problem for the admin to fix. Error messages and log lines go
through `_redact`, which masks every known key, old or new.

Replacing (`put`), in order, under one lock (so that of two PUTs carrying the
same hash exactly one wins and the other gets 409):
  1. the caller must be admin under the running policy           -> 403
  2. the body must be {"config": str, "hash": str}                -> 400
  3. an embedded configuration (no file) cannot be edited         -> 400
  4. the hash must be the running one                             -> 409
  5. masks are replaced by the keys they stand for
  6. the text must pass the same checks as `check-config`         -> 400, one line per problem
  7. the new grants must leave the caller admin (lockout)         -> 403
  8. the file is replaced atomically (temp file in the same
     directory, fsync, rename), the old one kept as `<file>.prev`
  9. the new tuple is swapped in.

Reloading (`reload`, on a changed file or SIGHUP) runs steps 6 and 9 only:
direct edits of the file get no lockout check, as in Aperture. An invalid
file keeps the running configuration and logs why.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import re
import tempfile
import threading
from typing import TYPE_CHECKING, Any

from aperture import hujson
from aperture.config import Config, parse_config
from aperture.errors import BadRequest, ConfigError, Conflict, Forbidden, GatewayError
from aperture.policy import Policy, validate_grants

if TYPE_CHECKING:
    from aperture.identity import Identity

__all__ = ["ConfigStore", "MASK", "compile_config", "secret_spans", "mask_secrets", "text_hash"]

log = logging.getLogger("aperture.config")

MASK = "********"
_MASK_LITERAL = json.dumps(MASK)
EMBEDDED = "configuration is embedded; start with --config FILE to edit it"
ADMIN_REQUIRED = "access denied: admin role required"
_MIN_REDACT = 4  # shorter "keys" are not hunted for in free text


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def compile_config(text: str, *, source: str = "<string>", log_warnings: bool = True) -> tuple[Config, Policy]:
    """Parse and check config text, grants included: the checks of `check-config`.

    Raises ConfigError with every problem (provider problems and grant problems together).
    """
    try:
        config = parse_config(text, source=source, log_warnings=log_warnings)
    except ConfigError as e:
        problems = list(e.problems)
        try:
            problems += [p for p in validate_grants(hujson.loads(text)) if p not in problems]
        except hujson.HuJSONError:
            pass
        raise ConfigError(problems) from None
    return config, Policy.compile(config.document)


# --- finding secrets in the text -----------------------------------------------------

_WS = re.compile(r"[ \t\r\n]*")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)
_SCALAR = re.compile(r"[^,\]}\s]+")


def _ws(text: str, i: int) -> int:
    return _WS.match(text, i).end()  # type: ignore[union-attr]


def _skip(text: str, i: int) -> int:
    """End of the JSON value starting at `i` (no recursion: safe on deep nesting)."""
    c = text[i]
    if c == '"':
        return _STRING.match(text, i).end()  # type: ignore[union-attr]
    if c not in "[{":
        return _SCALAR.match(text, i).end()  # type: ignore[union-attr]
    depth = 0
    for m in _TOKEN.finditer(text, i):
        t = m.group()
        if t in "[{":
            depth += 1
        elif t in "]}":
            depth -= 1
            if depth == 0:
                return m.end()
    raise ValueError("unterminated value")


def _members(text: str, i: int) -> list[tuple[str, int, int]]:
    """(key, value start, value end) of the object starting at `i`."""
    if text[i] != "{":
        return []
    out = []
    i = _ws(text, i + 1)
    if text[i] == "}":
        return out
    while True:
        m = _STRING.match(text, i)
        if m is None:
            raise ValueError("expected a key")
        key = json.loads(m.group())
        i = _ws(text, m.end())
        if text[i] != ":":
            raise ValueError("expected ':'")
        start = _ws(text, i + 1)
        end = _skip(text, start)
        out.append((key, start, end))
        i = _ws(text, end)
        if text[i] == ",":
            i = _ws(text, i + 1)
        elif text[i] == "}":
            return out
        else:
            raise ValueError("expected ',' or '}'")


def secret_spans(text: str) -> list[tuple[str, int, int]] | None:
    """(provider id, start, end) of every secret string literal, quotes included,
    in config order; None when the text is not valid HuJSON."""
    try:
        std = hujson.standardize(text)
        root = _ws(std, 0)
        spans: list[tuple[str, int, int]] = []
        for key, start, _ in _members(std, root):
            if key != "providers":
                continue
            for pid, pstart, _ in _members(std, start):
                for field, fstart, fend in _members(std, pstart):
                    if field == "apikey" and std[fstart] == '"':
                        spans.append((pid, fstart, fend))
                    elif field == "authorization":
                        for sub, sstart, send in _members(std, fstart):
                            if sub == "value" and std[sstart] == '"':
                                spans.append((pid, sstart, send))
        return spans
    except (hujson.HuJSONError, ValueError, IndexError, AttributeError):
        return None


def _literal_value(literal: str) -> str:
    return json.loads(literal)


def mask_secrets(text: str, extra: set[str] | frozenset[str] = frozenset()) -> str:
    """The text with every provider key masked (see the module docstring).

    `extra` are more secret values to hide wherever they appear."""
    spans = secret_spans(text) or []
    secrets = set(extra)
    pieces: list[str] = []
    copied = 0
    for _pid, start, end in spans:
        value = _literal_value(text[start:end])
        if not value:
            continue  # an empty key hides nothing and would look like a key
        secrets.add(value)
        pieces.append(text[copied:start])
        pieces.append(_MASK_LITERAL)
        copied = end
    pieces.append(text[copied:])
    return _redact("".join(pieces), secrets, min_len=8)


def _redact(text: str, secrets: set[str] | frozenset[str], *, min_len: int = _MIN_REDACT) -> str:
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= min_len and secret != MASK:
            text = text.replace(secret, MASK)
            escaped = json.dumps(secret)[1:-1]
            if escaped != secret:
                text = text.replace(escaped, MASK)
    return text


def _secrets_of(text: str) -> set[str]:
    out = set()
    for _pid, start, end in secret_spans(text) or []:
        try:
            value = _literal_value(text[start:end])
        except ValueError:
            continue
        if value:
            out.add(value)
    return out


# --- writing the file ---------------------------------------------------------------------


def _fsync_dir(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_atomic(path: str, text: str) -> None:
    """Replace `path` with `text` atomically, keeping the old file as `path.prev`."""
    directory = os.path.dirname(os.path.abspath(path))
    base = os.path.basename(path)
    try:
        mode = os.stat(path).st_mode & 0o7777
        exists = True
    except FileNotFoundError:
        mode, exists = 0o600, False  # the file holds keys: private by default
    temps: list[str] = []  # removed on the way out if still there

    def write_temp(data: bytes, suffix: str) -> str:
        fd, name = tempfile.mkstemp(dir=directory, prefix=f".{base}.", suffix=suffix)
        temps.append(name)
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        return name

    try:
        tmp = write_temp(text.encode("utf-8"), ".tmp")
        if exists:
            # The old inode stays reachable as .prev; the config path itself is
            # never missing: os.replace swaps the new file in in one step.
            prev = f"{path}.prev"
            link = f"{tmp}.prev"
            try:
                os.link(path, link)
                temps.append(link)
            except OSError:  # no hard links on this filesystem: copy instead
                with open(path, "rb") as src:
                    link = write_temp(src.read(), ".prev.tmp")
            os.replace(link, prev)
        os.replace(tmp, path)
    finally:
        for name in temps:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name)
    _fsync_dir(directory)


def _stat(path: str | None) -> tuple[int, int, int] | None:
    if path is None:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


# --- the store -------------------------------------------------------------------------------


class ConfigStore:
    """The running (Config, Policy); GET/PUT for admins; reload from the file.

    `path` None: the embedded default configuration, which cannot be edited
    over the API (PUT answers 400 "configuration is embedded; start with
    --config FILE to edit it"). A `path` whose file does not exist yet serves
    `config` and is created by the first PUT.

    Wire `reload` to SIGHUP (from an executor: it reads the file) and run
    `watch()` as a task to follow edits of the file.
    """

    def __init__(self, path: str | None, config: Config, policy: Policy) -> None:
        self.path = os.fspath(path) if path is not None else None
        self._lock = threading.Lock()
        self._state: tuple[Config, Policy, str] = (config, policy, text_hash(config.text))
        self.current: tuple[Config, Policy] = (config, policy)

    @classmethod
    def open(cls, path: str) -> ConfigStore:
        """Load the file at `path` (raises ConfigError with every problem)."""
        with open(path, "rb") as f:
            data = f.read()
        try:
            text = hujson.decode(data)
        except hujson.HuJSONError as e:
            raise ConfigError([f"{path}: {e}"]) from None
        config, policy = compile_config(text, source=path)
        return cls(path, config, policy)

    @property
    def hash(self) -> str:
        return self._state[2]

    @property
    def exists(self) -> bool:
        return self.path is not None and os.path.exists(self.path)

    def _swap(self, config: Config, policy: Policy) -> None:
        self._state = (config, policy, text_hash(config.text))
        self.current = (config, policy)

    # --- GET ---

    def get(self) -> dict:
        config, _policy, digest = self._state
        return {"config": mask_secrets(config.text, self._keys(config)), "exists": self.exists, "hash": digest}

    @staticmethod
    def _keys(config: Config) -> set[str]:
        return {p.apikey for p in config.providers.values() if p.apikey}

    # --- PUT ---

    def put(self, body: Any, identity: Identity) -> dict:
        with self._lock:
            old_config, old_policy, old_hash = self._state
            if old_policy.role(identity) != "admin":
                raise Forbidden(ADMIN_REQUIRED)
            if not isinstance(body, dict):
                raise BadRequest('body must be a JSON object {"config": "...", "hash": "..."}')
            text = body.get("config")
            given_hash = body.get("hash")
            if not isinstance(text, str):
                raise BadRequest('"config" must be a string holding the HuJSON configuration')
            if not isinstance(given_hash, str) or not given_hash:
                raise BadRequest('"hash" must be the hash from GET /api/config')
            if self.path is None:
                raise BadRequest(EMBEDDED)
            if given_hash != old_hash:
                raise Conflict("the configuration changed since it was read (stale hash); GET /api/config and try again")
            if text.startswith("\ufeff"):
                text = text[1:]
            secrets = self._keys(old_config) | _secrets_of(text)
            text, problems = self._unmask(text, old_config)
            try:
                config, policy = compile_config(text, source=self.path)
            except ConfigError as e:
                problems += e.problems
            else:
                for pid, provider in config.providers.items():
                    if provider.apikey == MASK:  # a mask the span search could not place
                        problems.append(f"providers.{pid}: the masked key {MASK} cannot be kept here; write the key itself")
            if problems:
                raise BadRequest(_redact("\n".join(problems), secrets))
            if policy.role(identity) != "admin":
                raise Forbidden(
                    "refused: this configuration would take the admin role away from you "
                    f"({identity.principal or 'this caller'}); keep a grant that makes you admin"
                )
            try:
                _write_atomic(self.path, text)
            except OSError as e:
                log.error("config: cannot write %s: %s", self.path, e.strerror or e.__class__.__name__)
                raise GatewayError(
                    f"cannot write the configuration file: {e.strerror or e.__class__.__name__}"
                ) from None
            self._swap(config, policy)
            log.info(
                "config: replaced by %s over the API (%d providers, hash %s…)",
                identity.principal or "?",
                len(config.providers),
                self.hash[:12],
            )
            return self.get()

    def _unmask(self, text: str, old: Config) -> tuple[str, list[str]]:
        """Masks in `text` -> the keys they stand for; problems for masks with no key."""
        spans = secret_spans(text)
        if not spans:
            return text, []  # nothing masked, or not HuJSON (parsing reports that)
        problems: list[str] = []
        pieces: list[str] = []
        copied = 0
        for pid, start, end in spans:
            if _literal_value(text[start:end]) != MASK:
                continue
            provider = old.providers.get(pid)
            if provider is None or not provider.apikey:
                where = "providers" + (f".{pid}" if re.fullmatch(r"[A-Za-z0-9_-]+", pid) else f"[{json.dumps(pid)}]")
                problems.append(
                    f"{where}: the masked key {MASK} stands for a key this provider does not have; write the key itself"
                )
                continue
            pieces.append(text[copied:start])
            pieces.append(json.dumps(provider.apikey, ensure_ascii=False))
            copied = end
        pieces.append(text[copied:])
        return "".join(pieces), problems

    # --- reload ---

    def reload(self) -> bool:
        """Re-read the file; True when a new configuration was swapped in.

        An unreadable or invalid file keeps the running configuration and logs why.
        """
        if self.path is None:
            return False
        with self._lock:
            try:
                with open(self.path, "rb") as f:
                    data = f.read()
                text = hujson.decode(data)
            except FileNotFoundError:
                log.warning("config: %s is missing; keeping the running configuration", self.path)
                return False
            except OSError as e:
                log.error("config: cannot read %s (%s); keeping the running configuration",
                          self.path, e.strerror or e.__class__.__name__)
                return False
            except hujson.HuJSONError as e:
                log.error("config: %s: %s; keeping the running configuration", self.path, e)
                return False
            old_config = self._state[0]
            if text == old_config.text:
                return False
            try:
                config, policy = compile_config(text, source=self.path)
            except ConfigError as e:
                secrets = self._keys(old_config) | _secrets_of(text)
                log.error(
                    "config: %s is invalid; keeping the running configuration:\n  %s",
                    self.path,
                    _redact("\n  ".join(e.problems), secrets),
                )
                return False
            self._swap(config, policy)
            log.info("config: reloaded %s (%d providers, hash %s…)", self.path, len(config.providers), self.hash[:12])
            return True

    async def watch(self, interval: float = 1.0) -> None:
        """Poll the file (mtime, size, inode) and reload when it changes. Runs until cancelled."""
        if self.path is None:
            return
        last = _stat(self.path)
        while True:
            await asyncio.sleep(interval)
            now = _stat(self.path)
            if now != last:
                last = now
                if now is not None:
                    await asyncio.to_thread(self.reload)
