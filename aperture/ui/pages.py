"""The HTML of the dashboard's pages: one small shell per page (title, heading,
navigation, the caller's identity as data attributes); the page's script
(static/app.js) fetches its data from /api/ and draws it. Error pages (403,
404) are complete on their own. Every value is escaped; no inline script or
style, so the Content-Security-Policy allows only files of our own origin."""

from __future__ import annotations

import html

# Strict: only our own files; no inline code, no eval, no framing, no other origins.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; "
       "frame-ancestors 'none'")
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
    (b"cache-control", b"no-store"),
]
HTML_HEADERS = [(b"content-type", b"text/html; charset=utf-8")] + SECURITY_HEADERS

# (page id, path, title, admin only)
NAV = [
    ("dashboard", "/ui/", "Dashboard", False),
    ("logs", "/ui/logs/", "Logs", False),
    ("tool-use", "/ui/tool-use/", "Tool Use", False),
    ("adoption", "/ui/adoption/", "Adoption", True),
    ("models", "/ui/models/", "Models", False),
    ("settings", "/ui/settings/", "Settings", True),
]
TITLES = {page: title for page, _, title, _ in NAV}


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def _nav(current: str, admin: bool) -> str:
    items = []
    for page, path, title, admin_only in NAV:
        if admin_only and not admin:
            continue
        aria = ' aria-current="page"' if page == current else ""
        items.append(f'<li><a href="{path}"{aria}>{_e(title)}</a></li>')
    return "\n".join(items)


def _frame(*, title: str, current: str, admin: bool, who: str, main: str,
           script: bool = True) -> bytes:
    scripts = ('<script src="/ui/static/vendor/chart.umd.min.js" defer></script>\n'
               '<script src="/ui/static/app.js" defer></script>') if script else ""
    text = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(title)} · aperture</title>
<link rel="stylesheet" href="/ui/static/app.css">
<link rel="icon" href="data:,">
{scripts}
</head>
<body>
<a class="skip" href="#main">Skip to content</a>
<header class="top">
<a class="brand" href="/ui/">aperture</a>
<nav aria-label="Pages"><ul>
{_nav(current, admin)}
</ul></nav>
<span class="who" title="signed in by your tailnet identity">{_e(who)}</span>
</header>
{main}
</body>
</html>
"""
    return text.encode("utf-8")


def page(page_id: str, *, title: str, who: str, role: str, subject: str = "",
         ident: str = "") -> bytes:
    """The shell of a page; app.js fills `main` from the page's data."""
    admin = role == "admin"
    heading = title
    main = (f'<main id="main" data-page="{_e(page_id)}" data-me="{_e(who)}" '
            f'data-role="{_e(role)}" data-subject="{_e(subject)}" data-ident="{_e(ident)}">\n'
            f'<h1>{_e(heading)}</h1>\n'
            f'<p class="loading" role="status">Loading…</p>\n'
            f'<noscript><p class="error">This page needs JavaScript.</p></noscript>\n'
            f'</main>')
    current = page_id if page_id in TITLES else ("logs" if page_id in ("session", "request")
                                                 else "dashboard")
    return _frame(title=title, current=current, admin=admin, who=who, main=main)


def error(status: int, message: str, *, who: str = "", role: str | None = None) -> bytes:
    titles = {403: "Access denied", 404: "Page not found", 400: "Bad request"}
    title = titles.get(status, "Error")
    main = (f'<main id="main" class="error-page">\n<h1>{status} · {_e(title)}</h1>\n'
            f'<p class="error">{_e(message)}</p>\n'
            f'<p><a href="/ui/">Back to the dashboard</a></p>\n</main>')
    return _frame(title=title, current="", admin=role == "admin", who=who or "-", main=main,
                  script=False)
