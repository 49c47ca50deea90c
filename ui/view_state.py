"""A page's view (its filters, cuts, page number, pilot) kept in the address bar and in the session, so that
navigation, a reload and a copied link all come back to it.

Streamlit forgets a widget's value as soon as a run no longer draws that widget: clicking another page in
the sidebar drops every widget key of the page left, and a reload starts a new session with none. So each
page calls :func:`restore` before drawing its widgets and :func:`publish` after:

- ``restore`` sets every key the session lacks, first from the query string (a reload, a copied link), else
  from this session's own copy of the page's last view (back from another page). A value that the page's
  choices no longer hold (a stat gone, a task renamed) is dropped, never shown as an error.
- ``publish`` writes the drawn values into the query string and into that copy. A value equal to the
  page's default is left out of the address, so that a fresh page's address stays short.

Values cross the address as text: a list as JSON, a bool as 1/0, numbers as Python writes them; each key
says its type (:class:`Key`), so a hand-edited address is read as what the widget expects or dropped.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterable

import streamlit as st


@dataclass(frozen=True)
class Key:
    """One widget key of a page's view: its type (``str``, ``int``, ``float``, ``bool``, ``list``, or
    ``range``: a pair of floats), the values it may take (None: any) and its default (left out of the URL)."""

    name: str
    kind: type | str = str
    choices: tuple | None = None
    default: Any = None


def encode(kind: type | str, value: Any) -> str:
    if kind is bool:
        return "1" if value else "0"
    if kind in (list, "range"):
        return json.dumps(list(value), separators=(",", ":"), ensure_ascii=False)
    return str(value)


def decode(key: Key, text: str) -> Any:
    """The value ``text`` stands for, as the key's widget expects it; ValueError when it cannot be."""
    kind = key.kind
    if kind is bool:
        if text not in ("0", "1", "true", "false"):
            raise ValueError(text)
        value: Any = text in ("1", "true")
    elif kind is int:
        value = int(text)
    elif kind is float:
        value = float(text)
    elif kind == "range":
        pair = json.loads(text)
        if not (isinstance(pair, list) and len(pair) == 2):
            raise ValueError(text)
        value = (float(pair[0]), float(pair[1]))
    elif kind is list:
        items = json.loads(text)
        if not isinstance(items, list):
            raise ValueError(text)
        value = [str(x) for x in items]
    else:
        value = text
    return checked(key, value)


def checked(key: Key, value: Any) -> Any:
    """``value`` kept within the key's choices (a list loses the items it no longer may hold); ValueError
    when a single value is not among them."""
    if key.choices is None:
        return value
    if key.kind is list:
        return [x for x in value if x in key.choices]
    if value not in key.choices:
        raise ValueError(value)
    return value


def _copy_name(page: str) -> str:
    return f"_view_{page}"


def restore(page: str, keys: Iterable[Key]) -> None:
    """Before the widgets are drawn: give each key the session lacks its value from the URL, or else from
    this session's last view of ``page``."""
    copy = st.session_state.get(_copy_name(page)) or {}
    params = st.query_params
    for key in keys:
        if key.name in st.session_state:
            continue
        try:
            if key.name in params:
                st.session_state[key.name] = decode(key, params[key.name])
            elif key.name in copy:
                st.session_state[key.name] = checked(key, copy[key.name])
        except (ValueError, TypeError, json.JSONDecodeError):
            pass  # a value the page cannot show: the widget's own default instead


def publish(page: str, keys: Iterable[Key], *, prefix: str) -> None:
    """After the widgets are drawn: their values into this session's copy of the view and into the URL
    (defaults left out). Query parameters starting with ``prefix`` (the page's own) that no key wants any
    more are removed: a stat taken off the page takes its cut out of the address."""
    copy: dict[str, Any] = {}
    wanted: dict[str, str] = {}
    for key in keys:
        if key.name not in st.session_state:
            continue
        value = st.session_state[key.name]
        copy[key.name] = list(value) if isinstance(value, tuple) else value
        if value is None or (key.default is not None and _same(value, key.default)):
            continue
        wanted[key.name] = encode(key.kind, value)
    st.session_state[_copy_name(page)] = {**(st.session_state.get(_copy_name(page)) or {}), **copy}
    params = st.query_params
    for name in [n for n in params if n.startswith(prefix) and n not in wanted]:
        del params[name]
    for name, text in wanted.items():
        if params.get(name) != text:  # an unchanged address is not rewritten
            params[name] = text


def _same(value: Any, default: Any) -> bool:
    if isinstance(value, (list, tuple)) and isinstance(default, (list, tuple)):
        return list(value) == list(default)
    return value == default
