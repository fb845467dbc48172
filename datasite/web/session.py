"""Browser sessions for the review pages: an opaque token in a cookie, and CSRF tokens.

The cookie holds a token from ``datasite.auth.tokens``, the same kind the API hands out,
so a web session expires and is revoked exactly like an API token. Every form carries a
CSRF token: the HMAC of the session token under the site's secret key, which a page on
another origin cannot compute (it can neither read the HttpOnly cookie nor the secret).
Before login there is no session yet, so the login form is bound to a short-lived random
nonce cookie instead.

>>> secret = b"k" * 32
>>> token = csrf_token(secret, "session-token")
>>> csrf_ok(secret, "session-token", token), csrf_ok(secret, "session-token", "forged")
(True, False)
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import tempfile
from pathlib import Path

from fastapi import Request, Response

SESSION_COOKIE = "datasite_session"
LOGIN_NONCE_COOKIE = "datasite_login_nonce"
CSRF_FIELD = "csrf_token"
SECRET_FILE = "secret_key"
_LOGIN_PURPOSE = "login:"
LOGIN_NONCE_SECONDS = 3600


def load_secret(data_dir: Path, configured: str | None = None) -> bytes:
    """The site's secret key: ``configured`` if given, else ``data_dir/secret_key``.

    The file is created on first start with mode 0600 and 32 random bytes, written
    under a temporary name and hard-linked into place, so two processes starting
    together agree on one key and neither ever reads a half-written one.

    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> load_secret(folder) == load_secret(folder), oct((folder / SECRET_FILE).stat().st_mode)
    (True, '0o100600')
    """
    if configured:
        return configured.encode()
    path = data_dir / SECRET_FILE
    if not path.exists():
        # Write the key fully under a private name, then link it into place: a second
        # process starting at the same moment either wins the link or reads our key.
        fd, temporary = tempfile.mkstemp(dir=data_dir, prefix=".secret-")
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, secrets.token_bytes(32))
            os.close(fd)
            os.link(temporary, path)
        except FileExistsError:
            pass
        finally:
            os.unlink(temporary)
    key = path.read_bytes()
    if len(key) < 32:
        raise RuntimeError(f"{path} is shorter than 32 bytes; delete it to make a new one.")
    return key


def csrf_token(secret: bytes, session_token: str) -> str:
    """The CSRF token that forms of the session ``session_token`` must carry."""
    return hmac.new(secret, session_token.encode(), hashlib.sha256).hexdigest()


def csrf_ok(secret: bytes, session_token: str, submitted: str) -> bool:
    """Whether ``submitted`` is the CSRF token of ``session_token`` (constant time)."""
    if not session_token or not submitted:
        return False
    return hmac.compare_digest(csrf_token(secret, session_token), submitted)


def login_csrf_token(secret: bytes, nonce: str) -> str:
    return csrf_token(secret, _LOGIN_PURPOSE + nonce)


def login_csrf_ok(secret: bytes, nonce: str, submitted: str) -> bool:
    return bool(nonce) and csrf_ok(secret, _LOGIN_PURPOSE + nonce, submitted)


def session_token_of(request: Request) -> str:
    return request.cookies.get(SESSION_COOKIE, "")


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def set_cookie(request: Request, response: Response, name: str, value: str, max_age: int) -> None:
    """Set an HttpOnly, SameSite=Strict cookie, Secure when the page came over https."""
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/",
        httponly=True,
        samesite="strict",
        secure=_secure(request),
    )


def clear_cookie(request: Request, response: Response, name: str) -> None:
    response.delete_cookie(
        name, path="/", httponly=True, samesite="strict", secure=_secure(request)
    )
