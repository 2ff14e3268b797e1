"""``GET /`` without ``file_hash`` from a browser: the upload page.

Only a client that prefers ``text/html`` (a browser) gets it; curl (``*/*``) and
API clients keep the seed contract's 400. The page (``static/upload.html``) is
static apart from escaped paths, the store's algorithm and the assets' cache
tags; its script and style come from ``/static/`` (:mod:`wsgi_store.http.assets`)
under a strict Content-Security-Policy: nothing inline, nothing from elsewhere.
"""

from __future__ import annotations

import hashlib
import html

import falcon

from wsgi_store.http.assets import PAGE, asset

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
OTHER_TYPES = ('application/json', 'application/problem+json', 'text/plain')


def wants_html(req: falcon.Request) -> bool:
    """True when the client prefers ``text/html`` over everything we answer."""
    accept = req.accept or ''
    if 'text/html' not in accept.lower():
        return False
    return req.client_prefers(('text/html', *OTHER_TYPES)) == 'text/html'


def is_page_request(req: falcon.Request) -> bool:
    """A ``GET``/``HEAD`` of ``/`` that can only get the page (or the seed's 400).

    Without ``file_hash`` nothing is read from the store, so authentication
    lets it through: the page must load before a token has been typed.
    """
    return req.method in ('GET', 'HEAD') and 'file_hash' not in req.params


def render(req: falcon.Request, resp: falcon.Response, algorithm: str) -> None:
    """Answer with the page (HEAD gets the headers only, from Falcon)."""
    resp.vary = ['Accept']
    resp.cache_control = ['no-cache']
    resp.set_header('Content-Security-Policy', CSP)
    resp.set_header('X-Content-Type-Options', 'nosniff')
    resp.set_header('Referrer-Policy', 'no-referrer')
    template = asset(PAGE).body.decode('utf-8')
    text = template.format(
        algorithm=html.escape(algorithm),
        base=html.escape(req.prefix, quote=True),
        prefix=html.escape(req.root_path, quote=True),
        js_tag=asset('upload.js').tag,
        css_tag=asset('upload.css').tag,
    )
    tag = hashlib.sha256(text.encode()).hexdigest()[:20]
    resp.etag = f'"{tag}"'  # no-cache: revalidated each time, a 304 when unchanged
    if any(str(t) in (tag, '*') for t in req.if_none_match or []):
        resp.status = falcon.HTTP_304
        return
    resp.content_type = falcon.MEDIA_HTML
    resp.text = text
