"""What keeps a hostile web page from using a browser's tailnet identity.

Identity comes from the network address (tailscaled's WhoIs), so any page an
admin has open could send requests to http://ai with the admin's rights. The
guard refuses what only such a page would send:

* DNS rebinding: a page from evil.example whose name is made to resolve to
  the gateway is same-origin with it in the browser's eyes, and its requests
  carry `Host: evil.example`. The dashboard, its data, the management
  endpoints and /metrics answer only to the names aperture answers to
  (`--ui-hosts`; by default `ai`, `localhost`, this machine's host name, and
  those names under a tailnet's `.ts.net` domain, plus the `--listen` host).
  An IP address as Host is always accepted: no DNS is involved, so no page of
  another origin can be rebound to it. The API formats' paths, and the reads
  clients make beside them (`GET /v1/models`, `/api/providers`,
  `/api/whoami`), keep answering any name (clients may use a name of their
  own); a request to them from a browser (one with `Origin` or
  `Sec-Fetch-Site`) gets the same check.
* Cross-site requests that change something: every method but GET and HEAD
  that comes from a browser must come from the gateway's own origin: the
  `Origin` header, when present, must name the request's own Host (one of
  those names), and `Sec-Fetch-Site`, when present, must be `same-origin` or
  `none`. Browsers send `Origin` with every such request; clients that are no
  browser (SDKs, curl) send neither header and are not affected.

No response carries CORS allowances, so no other origin can read one.
"""

from __future__ import annotations

import ipaddress
import socket

__all__ = ["Guard", "default_hosts"]

_SAFE_METHODS = frozenset(("GET", "HEAD"))


def default_hosts(listen_host: str = "") -> tuple[str, ...]:
    names = {"ai", "localhost"}
    try:
        name = socket.gethostname().lower()
    except OSError:
        name = ""
    if name:
        names.add(name)
        names.add(name.split(".", 1)[0])
    if listen_host and not _is_ip(listen_host) and listen_host not in ("", "0.0.0.0", "::"):
        names.add(listen_host.lower())
    return tuple(sorted(names))


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
        return True
    except ValueError:
        return False


def split_host(value: str) -> tuple[str, str]:
    """(host lowercased without a trailing dot, port or "") of a Host header value."""
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        host, rest = value[1:end], value[end + 1:]
        return host, rest[1:] if rest.startswith(":") else ""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        host, port = value, ""
    return host.rstrip("."), port


class Guard:
    def __init__(self, hosts: tuple[str, ...], api_handlers: set[int]) -> None:
        names = set()
        suffixes = []
        for h in hosts:
            h = h.strip().lower().rstrip(".")
            if h.startswith("*."):
                suffixes.append(h[1:])
            elif h:
                names.add(h)
        # The tailnet's MagicDNS names of these hosts: NAME.<tailnet>.ts.net
        self._short = frozenset(n for n in names if "." not in n)
        self._names = frozenset(names)
        self._suffixes = tuple(suffixes)
        self._api = api_handlers
        self.hosts = tuple(sorted(names)) + tuple("*" + s for s in suffixes)

    def host_allowed(self, host: str) -> bool:
        if not host:
            return False
        if host in self._names or _is_ip(host):
            return True
        if host.endswith(self._suffixes) and self._suffixes:
            return True
        first, _, rest = host.partition(".")
        return first in self._short and rest.endswith(".ts.net") and rest.count(".") >= 1

    def check(self, req, handler) -> str | None:
        """None when the request may go on, else why not."""
        api = id(handler) in self._api
        host = origin = fetch_site = None
        for name, value in req.headers:
            if name == b"host":
                host = value
            elif name == b"origin":
                origin = value
            elif name == b"sec-fetch-site":
                fetch_site = value
        if api and origin is None and fetch_site is None:
            return None  # not a browser: the API formats answer any name
        if req.path == "/healthz":
            return None
        host_text = host.decode("latin-1") if host is not None else ""
        hostname, port = split_host(host_text)
        if not self.host_allowed(hostname):
            return ("host not allowed: %r is not a name this gateway answers to (add it with "
                    "--ui-hosts)" % host_text[:100])
        if req.method in _SAFE_METHODS:
            return None
        if fetch_site is not None and fetch_site not in (b"same-origin", b"none"):
            return "cross-site request refused (Sec-Fetch-Site: %s)" % fetch_site.decode(
                "latin-1")[:40]
        if origin is not None:
            text = origin.decode("latin-1")
            scheme, sep, rest = text.partition("://")
            if not sep or scheme not in ("http", "https"):
                return "cross-origin request refused (Origin: %s)" % text[:100]
            o_host, o_port = split_host(rest)
            if (o_host, o_port or _default_port(scheme)) != (hostname, port or _default_port(scheme)):
                return "cross-origin request refused (Origin: %s)" % text[:100]
        return None


def _default_port(scheme: str) -> str:
    return "443" if scheme == "https" else "80"
