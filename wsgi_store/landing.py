"""``GET /`` without ``file_hash`` from a browser: a short page about the service.

Only a client that prefers ``text/html`` (a browser) gets it; curl (``*/*``) and
API clients keep the seed contract's 400. The page is static apart from the
escaped base URL and the store's algorithm, sent with a strict
Content-Security-Policy (no scripts, inline styles only).
"""

from __future__ import annotations

import html

import falcon

CSP = "default-src 'none'; style-src 'unsafe-inline'"
OTHER_TYPES = ('application/json', 'application/problem+json', 'text/plain')

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>wsgi-store</title>
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:46em;margin:2em auto;
padding:0 1em}}pre{{background:#f4f4f4;padding:.6em;overflow-x:auto}}</style>
</head>
<body>
<h1>wsgi-store</h1>
<p>A content-addressed file store: every file is named by the {algorithm} hash
of its bytes. Upload a file and you get its hash back; download it by that
hash.</p>
<h2>With curl</h2>
<pre>
# upload (prints the hash); -fsS shows errors instead of hiding them
curl -fsS -T photo.jpg {base}/
curl -fsS --data-binary @photo.jpg {base}/

# download, then delete
curl -fsS -o copy.jpg '{base}/?file_hash=HASH'
curl -fsS -X DELETE '{base}/?file_hash=HASH'
</pre>
<p>The same objects live at <code>/files/HASH</code> (GET, HEAD, PUT, DELETE);
<code>GET /files</code> lists them. The whole API is described in
<a href="{prefix}/openapi.json">/openapi.json</a> (OpenAPI 3.1).</p>
</body>
</html>
"""


def wants_html(req: falcon.Request) -> bool:
    """True when the client prefers ``text/html`` over everything we answer."""
    accept = req.accept or ''
    if 'text/html' not in accept.lower():
        return False
    return req.client_prefers(('text/html', *OTHER_TYPES)) == 'text/html'


def render(req: falcon.Request, resp: falcon.Response, algorithm: str) -> None:
    """Answer with the page (HEAD gets the headers only, from Falcon)."""
    resp.content_type = falcon.MEDIA_HTML
    resp.vary = ['Accept']
    resp.cache_control = ['no-cache']
    resp.set_header('Content-Security-Policy', CSP)
    resp.set_header('X-Content-Type-Options', 'nosniff')
    prefix = html.escape(req.app, quote=True)
    base = html.escape(req.prefix, quote=True)
    resp.text = PAGE.format(algorithm=html.escape(algorithm), base=base, prefix=prefix)
