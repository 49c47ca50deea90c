"""``vitpro users`` (who may sign in to the web app, with which role) and ``vitpro ui`` (serve it).

Registered on the main group (vitpro/commands/group.py).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import click

from config.settings import load_settings

from .group import cli, echo_table, fail, fmt_time, open_engine

# ui/server.py is Streamlit's ASGI app with the sign-in routes and the session gate in front of ui/app.py
APP_FILE = Path(__file__).resolve().parents[2] / "ui" / "server.py"


@cli.group()
def users() -> None:
    """People who may sign in to the web app: annotators label, admins also launch jobs and export."""


@users.command("add")
@click.argument("username")
@click.option("--role", type=click.Choice(["annotator", "admin"]), default="annotator", show_default=True)
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input (scripts); otherwise it is asked twice.")
@click.option("--replace", is_flag=True, help="Set a new password and role for an existing user.")
def users_add(username, role, password_stdin, replace) -> None:
    """Create a user (the password is stored hashed with scrypt)."""
    from db.app import users as users_db

    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("password", hide_input=True, confirmation_prompt=True)
    try:
        replaced = users_db.add(open_engine(), username, password, role, replace=replace)
    except users_db.UserError as exc:
        fail(str(exc))
    click.echo(f"{'updated' if replaced else 'added'} {username} ({role})")


@users.command("list")
def users_list() -> None:
    """Users, their roles and whether they may sign in."""
    from db.app import users as users_db

    rows = users_db.list_users(open_engine())
    if not rows:
        click.echo("no users yet: vitpro users add NAME --role admin")
        return
    echo_table([(u.username, u.role, "disabled" if u.disabled else "active", fmt_time(u.created_at)) for u in rows], ("user", "role", "state", "created (UTC)"))


@users.command("disable")
@click.argument("username")
@click.option("--enable", is_flag=True, help="Let the user sign in again.")
def users_disable(username, enable) -> None:
    """Stop a user signing in (takes effect at their next action, even mid-session)."""
    from db.app import users as users_db

    try:
        ended = users_db.set_disabled(open_engine(), username, not enable)
    except users_db.UserError as exc:
        fail(str(exc))
    click.echo(f"{username} {'enabled' if enable else 'disabled'}" + (f"; {ended} session(s) ended" if ended else ""))


@users.command("sessions")
@click.argument("username", required=False)
@click.option("--all", "show_all", is_flag=True, help="Also revoked and expired sessions.")
def users_sessions(username, show_all) -> None:
    """Signed-in browsers (of USERNAME, or everyone's): id, since when, last use, expiry, browser, address."""
    from db.app import sessions as sessions_db

    rows = sessions_db.list_sessions(open_engine(), username, active_only=not show_all)
    if not rows:
        click.echo("no active sessions" if not show_all else "no sessions")
        return
    echo_table([(r.id, r.username, r.method, fmt_time(r.created_at), fmt_time(r.last_seen), fmt_time(r.expires_at),
                  sessions_db.state(r), r.address, (r.user_agent or "")[:50]) for r in rows],
                ("id", "user", "method", "signed in (UTC)", "last use", "expires", "state", "address", "browser"))


@users.command("revoke")
@click.argument("target")
def users_revoke(target) -> None:
    """End a session at once: TARGET is a session id (from `users sessions`) or a user name (all their sessions)."""
    from db.app import sessions as sessions_db

    by = os.environ.get("VITPRO_USER") or os.environ.get("USER") or "cli"
    n = sessions_db.revoke(open_engine(), session_id=int(target), by=by) if target.isdigit() else sessions_db.revoke(open_engine(), username=target, by=by)
    if n == 0:
        fail(f"no active session matches {target!r} (see `vitpro users sessions`)")
    click.echo(f"revoked {n} session(s)")


@users.command("unlock")
@click.argument("username", required=False)
@click.option("--address", help="Lift the lockout of this address instead of (or as well as) a user name.")
def users_unlock(username, address) -> None:
    """Lift a lockout after too many failed sign-ins (see `users lockouts`)."""
    from db.app import sign_in

    if not username and not address:
        fail("name a user or pass --address")
    n = sign_in.unlock(open_engine(), username=username, address=address)
    click.echo(f"unlocked {' and '.join(x for x in (username, address) if x)}" + ("" if n else " (it was not locked)"))


@users.command("lockouts")
def users_lockouts() -> None:
    """User names and addresses locked after too many failed sign-ins."""
    from db.app import sign_in

    rows = sign_in.lockouts(open_engine())
    if not rows:
        click.echo("nothing is locked")
        return
    echo_table([(r.kind, r.subject, r.failures, fmt_time(r.locked_at)) for r in rows], ("kind", "name or address", "failures", "locked (UTC)"))


@users.command("attempts")
@click.argument("username", required=False)
@click.option("--limit", type=int, default=30, show_default=True)
def users_attempts(username, limit) -> None:
    """The latest sign-in tries (every one is recorded): when, who, from where, outcome."""
    from db.app import sign_in

    rows = sign_in.recent(open_engine(), limit=limit, username=username)
    echo_table([(fmt_time(r.ts), r.username, r.address, r.reason) for r in rows], ("when (UTC)", "user", "address", "outcome"))


def streamlit_command(port: int, address: str) -> list[str]:
    # toolbarMode minimal: no developer menu (Clear cache, Deploy, Rerun settings) for anyone
    return [sys.executable, "-m", "streamlit", "run", str(APP_FILE), "--server.headless", "true", "--server.port", str(port),
            "--server.address", address, "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
            "--client.toolbarMode", "minimal", "--client.showErrorDetails", "false"]


def serve(port: int, address: str) -> int:
    """Run the web app in the foreground until interrupted or told to stop; returns its exit code.

    Streamlit runs as a child. A SIGTERM or SIGHUP sent to this process (``kill PID``, a service manager)
    is passed on to it and waited for; without that, Python's default action ends this process alone and the
    child, re-parented, keeps serving the port. Returning (rather than dying) also lets a caller's clean-up
    run: the demo stops its workers on the way out.
    """
    open_engine()  # create the store before the first page asks it
    shown = "localhost" if address in ("0.0.0.0", "127.0.0.1") else address
    click.secho(f"web app: open http://{shown}:{port} in a browser (Ctrl+C stops it)", bold=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(APP_FILE.parent.parent), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    child = subprocess.Popen(streamlit_command(port, address), env=env)
    stopped: list[int] = []

    def forward(signum, _frame) -> None:
        stopped.append(signum)
        if child.poll() is None:
            child.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        while True:
            try:
                code = child.wait()
                break
            except KeyboardInterrupt:  # Ctrl+C: the terminal sent it to the child as well; wait for it to end
                stopped.append(signal.SIGINT)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if child.poll() is None:  # this process is leaving for another reason: never leave the server behind
            child.terminate()
            try:
                child.wait(15)
            except subprocess.TimeoutExpired:
                child.kill()
    return 0 if stopped else code


@cli.command("ui")
@click.option("--port", type=click.IntRange(1, 65535), default=8501, show_default=True)
@click.option("--address", default="127.0.0.1", show_default=True, help="0.0.0.0 to serve other machines.")
def ui_command(port, address) -> None:
    """Serve the curator web app (Streamlit). Sign in with a user made by `vitpro users add`."""
    from db.app import users as users_db

    if users_db.count(open_engine()) == 0:
        click.secho("no users yet: create one first, e.g. `vitpro users add admin --role admin`", fg="yellow")
    click.echo(f"store: {load_settings().describe()['catalog']}")
    sys.exit(serve(port, address))
