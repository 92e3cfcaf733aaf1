"""Authentication on the web side: every request's viewer, worked out once (AuthMiddleware), the refusals
(401 for the API and machines, a redirect to the login page for a person's browser), and the login page.

With no auth file every request is EVERYONE's and nothing here refuses anything. With one, only the probes
(`/healthz`, `/readyz`), the login page, the pages' own static files and, unless made private, `/metrics`
(the server's own counters: no namespace, session or user in them) answer without an identity. Private
metrics name namespaces (the archive's usage by namespace), so they are for an identity that sees them all.

The browser's login: the person pastes a token into /login; the server keeps a login (historyserver.identity: in
memory and as a signed record in the archive, so that every replica knows it) and sets a cookie holding only its
random reference (HttpOnly, SameSite=Lax, expiring with the login). URLs carry no secret and stay shareable: a
colleague following one signs in as themselves and lands on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, quote, urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from prometheus_client import CollectorRegistry, Counter
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from archive.storage import Storage, StorageError

from .access import EVERYONE, NOBODY, viewer_of
from .authfile import AuthConfig
from .identity import Authenticator, Identified, Presented
from .views.pages import render

API = "/api/v1"
COOKIE = "ray_history_login"
PROBES = frozenset({"/healthz", "/readyz"})
LOGIN_PAGES = frozenset({"/login", "/logout"})
STATIC = "/static/"
# A login form is a token and an address: anything longer is not one.
MAX_FORM_BYTES = 16 * 1024
REALM = 'Bearer realm="ray-history"'
# When to try again after the archive could not say whether a login holds (as for any other store failure).
STORE_RETRY_AFTER_S = 5


@dataclass(frozen=True)
class AccessSettings:
    """How the server decides who may see what: no auth file is the server open to whoever reaches it."""

    auth: AuthConfig | None = None
    metrics_public: bool = True


class Gate:
    """The identity of each request and what to answer a request that has none."""

    def __init__(self, settings: AccessSettings, registry: CollectorRegistry, store: Storage | None = None) -> None:
        self.settings = settings
        # Logins are kept in the archive (`store`) too, so that every replica knows them.
        self.authenticator = Authenticator(settings.auth, store) if settings.auth is not None else None
        self.refused = Counter("ray_history_server_auth_refused", "Requests refused for want of a valid "
                               "identity, by reason.", ["reason"], registry=registry)  # fmt: skip
        self.ignored = Counter("ray_history_server_auth_proxy_headers_ignored", "Requests carrying the "
                               "proxy's identity headers from an address not trusted (ignored).",
                               registry=registry)  # fmt: skip

    def needs_nobody(self, path: str) -> bool:
        """Paths answered without an identity, and without looking for one."""
        return path in PROBES or path.startswith(STATIC) or (path == "/metrics" and self.settings.metrics_public)

    def identify(self, request: Request) -> Identified:
        assert self.authenticator is not None
        presented = Presented(
            peer=request.client.host if request.client else None,
            headers=request.headers.getlist,
            bearer=_bearer(request.headers.get("authorization")),
            login=request.cookies.get(COOKIE) or None,
        )  # fmt: skip
        identified = self.authenticator.identify(presented)
        if identified.ignored_proxy_headers:
            self.ignored.inc()
        return identified

    def refuse(self, request: Request, identified: Identified) -> Response:
        problem = identified.problem or "no_credentials"
        self.refused.labels(problem).inc()
        if problem != "bad_token" and _wants_page(request):
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            answer: Response = RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)
            if problem == "ended_login":
                answer.delete_cookie(COOKIE, path="/")
            return answer
        if problem == "bad_token":
            message, challenge = "the bearer token is not valid", f'{REALM}, error="invalid_token"'
        elif problem == "ended_login":
            message, challenge = "the login has ended or expired: sign in again at /login", REALM
        else:
            message, challenge = "authentication required: send Authorization: Bearer TOKEN", REALM
        return JSONResponse({"error": message}, status_code=401, headers={"WWW-Authenticate": challenge})


class AuthMiddleware:
    """Puts each request's viewer on it (request.state.viewer), or answers the request itself when it has none.

    Pure ASGI, before routing: it covers every path, the OpenAPI documents and paths that match no route too."""

    def __init__(self, app: ASGIApp, gate: Gate) -> None:
        self.app = app
        self.gate = gate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        if self.gate.authenticator is None:
            state["viewer"] = EVERYONE
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        if self.gate.needs_nobody(request.url.path):
            state["viewer"] = NOBODY
            await self.app(scope, receive, send)
            return
        try:
            # A login not seen lately is read from the archive: off the event loop.
            if COOKIE in request.cookies:
                identified = await run_in_threadpool(self.gate.identify, request)
            else:
                identified = self.gate.identify(request)
        except StorageError as exc:
            answer = JSONResponse({"error": f"the login cannot be checked now (the archive does not answer: {exc})"},
                                  status_code=503, headers={"Retry-After": str(STORE_RETRY_AFTER_S)})  # fmt: skip
            await answer(scope, receive, send)
            return
        if identified.viewer is None and request.url.path not in LOGIN_PAGES:
            await self.gate.refuse(request, identified)(scope, receive, send)
            return
        if request.url.path == "/metrics" and not identified.viewer.sees_all:  # type: ignore[union-attr]
            # Private metrics may name every namespace (the archive's usage by namespace): for who sees them all.
            answer = JSONResponse({"error": "/metrics is for an identity that sees every namespace (namespaces = "
                                   '["*"] in the auth file)'}, status_code=403)  # fmt: skip
            await answer(scope, receive, send)
            return
        state["viewer"] = identified.viewer or NOBODY
        await self.app(scope, receive, send)


def _bearer(header: str | None) -> str | None:
    """The token of `Authorization: Bearer TOKEN`; '' for an Authorization of another kind (never valid)."""
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def _wants_page(request: Request) -> bool:
    """A person's browser asking for a page (sent to the login page), not a script or the API (a 401)."""
    return (request.method in ("GET", "HEAD") and not request.url.path.startswith(API)
            and "text/html" in request.headers.get("accept", ""))  # fmt: skip


def _gate(request: Request) -> Gate:
    return request.app.state.gate  # type: ignore[no-any-return]


def safe_next(value: str | None) -> str:
    """Where to go after signing in: a path of this server only (never another host), else the home page."""
    if not value or not value.startswith("/") or value.startswith(("//", "/\\")) or any(c in value for c in "\r\n\\"):
        return "/"
    if urlsplit(value).path in LOGIN_PAGES:
        return "/"
    return value


def _same_origin(request: Request) -> bool:
    """A form posted from this server's own page (a browser always sends Origin with a POST)."""
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    return urlsplit(origin).netloc == request.headers.get("host")


def _secure(request: Request) -> bool:
    # Behind a TLS-terminating ingress the connection is plain HTTP; the ingress says what the browser used.
    return request.url.scheme == "https" or request.headers.get("x-forwarded-proto", "").lower() == "https"


router = APIRouter(include_in_schema=False)


def _login_page(request: Request, next_url: str, error: str | None = None, status_code: int = 200) -> Response:
    gate = _gate(request)
    auth = gate.settings.auth
    viewer = viewer_of(request)
    return render(request, "login.html", status_code=status_code, json_url=None, next_url=next_url, error=error,
                  tokens=auth is not None and auth.has_tokens, proxy=auth is not None and auth.proxy is not None,
                  signed_in=viewer if viewer.name else None)  # fmt: skip


@router.get("/login")
def login_page(request: Request, next: str | None = None) -> Response:
    if _gate(request).authenticator is None:
        return RedirectResponse(safe_next(next), status_code=303)  # nobody needs to sign in here
    return _login_page(request, safe_next(next))


@router.post("/login")
async def sign_in(request: Request) -> Response:
    gate = _gate(request)
    if gate.authenticator is None:
        return RedirectResponse("/", status_code=303)
    if not _same_origin(request):
        return JSONResponse({"error": "a login is posted from this server's own login page"}, status_code=403)
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            return JSONResponse({"error": "the login form is too large"}, status_code=413)
    form = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    next_url = safe_next((form.get("next") or ["/"])[0])
    token = (form.get("token") or [""])[0].strip()
    # Off the event loop: the login is written to the archive.
    started = await run_in_threadpool(gate.authenticator.sign_in, token) if token else None
    if started is None:
        gate.refused.labels("bad_token" if token else "no_credentials").inc()
        message = "That token is not valid." if token else "Paste your token to sign in."
        return _login_page(request, next_url, message, status_code=401)
    reference, _ = started
    answer = RedirectResponse(next_url, status_code=303)
    answer.set_cookie(COOKIE, reference, max_age=int(gate.authenticator.logins.lifetime_s), path="/", httponly=True,
                      samesite="lax", secure=_secure(request))  # fmt: skip
    return answer


@router.post("/logout")
def sign_out(request: Request) -> Response:
    gate = _gate(request)
    if not _same_origin(request):
        return JSONResponse({"error": "signing out is posted from this server's own pages"}, status_code=403)
    reference = request.cookies.get(COOKIE)
    if reference and gate.authenticator is not None:
        gate.authenticator.logins.end(reference)
    answer = RedirectResponse("/login", status_code=303)
    answer.delete_cookie(COOKIE, path="/", httponly=True, samesite="lax", secure=_secure(request))
    return answer
