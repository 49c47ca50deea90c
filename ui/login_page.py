"""The sign-in page ``/login`` as one HTML document (pure: no Streamlit, no script). Every value put into it
is escaped; the form posts the name and password in the request body, never in the URL."""
from __future__ import annotations

from html import escape

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; background: #f6f7f9; margin: 0; }
main { max-width: 380px; margin: 12vh auto; background: #fff; padding: 28px 32px; border-radius: 10px;
       box-shadow: 0 1px 4px rgba(0,0,0,.12); }
h1 { font-size: 1.35em; margin: 0 0 4px; } p.sub { color: #555; margin: 0 0 20px; font-size: .92em; }
label { display: block; font-size: .9em; margin: 12px 0 4px; }
input[type=text], input[type=password] { width: 100%; box-sizing: border-box; padding: 8px 10px; font-size: 1em;
       border: 1px solid #bbb; border-radius: 6px; }
button { margin-top: 18px; width: 100%; padding: 9px; font-size: 1em; border: 0; border-radius: 6px;
       background: #2b59c3; color: #fff; cursor: pointer; }
.error { background: #fdecea; color: #8a1c12; padding: 8px 10px; border-radius: 6px; margin-bottom: 10px; }
.notice { background: #e8f4ea; color: #1d5c2a; padding: 8px 10px; border-radius: 6px; margin-bottom: 10px; }
.oidc { display: block; text-align: center; margin-top: 16px; }
"""


def render(*, csrf: str, next_path: str = "/", message: str = "", notice: str = "", oidc: bool = False) -> str:
    error = f'<div class="error" role="alert">{escape(message)}</div>' if message else ""
    info = f'<div class="notice" role="status">{escape(notice)}</div>' if notice else ""
    # Streamlit's own OIDC round trip (st.login's), started by the server's /login/oidc; the e-mail must be a user
    provider = '<a class="oidc" href="/login/oidc">Sign in with your organisation\'s account</a>' if oidc else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer"><title>Sign in · VIT-Pro Curation Studio</title><style>{_STYLE}</style></head>
<body><main>
<h1>VIT-Pro Curation Studio</h1>
<p class="sub">Sign in with the name and password an admin made for you.</p>
{info}{error}
<form method="post" action="/login" autocomplete="on">
<input type="hidden" name="csrf" value="{escape(csrf)}"><input type="hidden" name="next" value="{escape(next_path)}">
<label for="username">User name</label><input id="username" name="username" type="text" autocomplete="username" required autofocus>
<label for="password">Password</label><input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit">Sign in</button>
</form>{provider}
</main></body></html>"""
