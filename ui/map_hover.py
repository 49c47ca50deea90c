"""The Map's hover thumbnail: the photo of the point under the mouse, shown beside the cursor.

A Plotly hover label holds text only, and ``st.plotly_chart`` reports selections, not hovers. So the hover is
done in the browser, by a small ``st.components.v2`` component whose script runs in the page itself: it finds
the Map's chart, listens to plotly's own ``plotly_hover`` / ``plotly_unhover`` events, and shows an ``<img>``
whose address names the point by (figure, trace, index in the trace). The server answers that address
(:func:`thumbnail_response`, the ``/map/thumb`` route of ui/server.py, behind the sign-in gate like every
other path) from what the page registered when it drew the figure (:func:`register`): which sample position
each trace draws, and so which image. The address thus carries no image path, no sample id and nothing a
user could point elsewhere: an unknown figure, trace or index is a 404.

Why positions and not image ids in the figure: at 50,000 drawn points the ids would add megabytes to every
redraw, while the positions are already what the selection reads (ui/views/map.py's ``traces``)."""
from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

THUMB_SIDE = 192  # px: the longest side of a hover thumbnail
KEEP = 16  # figures remembered (each holds references to arrays the page has anyway, not copies)


@dataclass(frozen=True)
class Figure:
    points: Any  # db.reads.map_reads.MapPoints: a position's sample id
    traces: tuple  # per trace of the figure: the positions it draws (None for the density layer)
    blobs: Any  # the image store the page reads (a folder, or S3 through this machine's cache)
    first_image: Callable[[str], str | None]  # a sample's first image, as a path in that store (a point read)


_figures: OrderedDict[str, Figure] = OrderedDict()
_lock = threading.Lock()


def register(points, traces: list, blobs, first_image: Callable[[str], str | None]) -> str:
    """Remember a drawn figure; the key names it in hover addresses. The same figure drawn again (a rerun) gets
    the same key, so a page left open keeps working across reruns; the least recently drawn are forgotten."""
    digest = hashlib.blake2b(digest_size=12)
    digest.update(str(getattr(points, "model_id", "")).encode())
    digest.update(str(id(points)).encode())  # another store version is another MapPoints object
    for positions in traces:
        digest.update(b"-" if positions is None else np.ascontiguousarray(positions, dtype=np.int64).tobytes())
        digest.update(b"|")
    key = digest.hexdigest()
    with _lock:
        _figures[key] = Figure(points, tuple(traces), blobs, first_image)
        _figures.move_to_end(key)
        while len(_figures) > KEEP:
            _figures.popitem(last=False)
    return key


def image_of(key: str, trace: int, index: int) -> tuple[Any, str] | None:
    """(the image store, the first image's path in it) of point ``index`` of ``trace`` in the figure ``key``;
    None when the figure is unknown (forgotten, or never drawn here) or the point is not in it."""
    with _lock:
        figure = _figures.get(key)
    if figure is None or not 0 <= trace < len(figure.traces):
        return None
    positions = figure.traces[trace]
    if positions is None or not 0 <= index < len(positions):
        return None
    image = figure.first_image(figure.points.sample_ids[int(positions[index])].as_py())
    return (figure.blobs, image) if image else None


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None and len(value) <= 12 else None
    except ValueError:
        return None


def thumbnail_response(key: str | None, trace: str | None, index: str | None) -> tuple[int, bytes]:
    """(HTTP status, body): a JPEG of at most :data:`THUMB_SIDE` px, or 404 with a short reason."""
    from ui.images import thumbnail

    t, i = _int(trace), _int(index)
    try:
        found = image_of(key or "", t, i) if t is not None and i is not None else None
        if found is None:
            return 404, b"no such point on a figure drawn here"
        blobs, image = found
        path = blobs.local(image, missing_ok=True)
    except (OSError, ValueError):  # a store that cannot be reached, a path the store refuses
        return 404, b"image not readable"
    data = thumbnail(str(path), THUMB_SIDE)
    return (200, data) if data else (404, b"image file missing")


# ---- the component: plain JavaScript, run in the page (no build step, nothing fetched from elsewhere) ------
JS = r"""
export default function (component) {
  const { data, parentElement } = component;
  const key = data && data.key;
  const chartClass = data && data.chart;
  if (!key || !chartClass) return;
  let tip = document.getElementById("vitpro-map-hover");
  if (!tip) {
    tip = document.createElement("div");
    tip.id = "vitpro-map-hover";
    tip.style.cssText = "position:fixed;z-index:1000;pointer-events:none;display:none;background:#fff;" +
      "border:1px solid #bbb;border-radius:4px;padding:3px;box-shadow:0 2px 8px rgba(0,0,0,.25)";
    const img = document.createElement("img");
    img.className = "vitpro-hover-thumb";
    img.alt = "photo of the point under the mouse";
    img.style.cssText = "display:block;max-width:192px;max-height:192px";
    tip.appendChild(img);
    document.body.appendChild(tip);
  }
  const img = tip.querySelector("img");
  let timer = null, attached = null;
  const hide = () => { clearTimeout(timer); tip.style.display = "none"; };
  const onHover = (ev) => {
    const p = ev && ev.points && ev.points[0];
    if (!p || p.curveNumber == null) return;
    const index = p.pointIndex != null ? p.pointIndex : p.pointNumber;
    if (index == null || Array.isArray(index)) return;
    const src = "/map/thumb?f=" + encodeURIComponent(key) + "&t=" + p.curveNumber + "&i=" + index;
    const e = ev.event || {};
    clearTimeout(timer);
    timer = setTimeout(() => {  // a short wait: sweeping the mouse over many points asks for none of them
      img.onload = () => {
        const x = (e.clientX || 0) + 16, y = (e.clientY || 0) + 16;
        tip.style.left = Math.min(x, window.innerWidth - img.width - 24) + "px";
        tip.style.top = Math.min(y, window.innerHeight - img.height - 24) + "px";
        tip.style.display = "block";
      };
      img.onerror = hide;
      img.src = src;
    }, 120);
  };
  const attach = () => {
    const gd = document.querySelector("." + chartClass + " .js-plotly-plot");
    if (!gd || gd === attached || typeof gd.on !== "function") return;
    gd.on("plotly_hover", onHover);
    gd.on("plotly_unhover", hide);
    gd.addEventListener("mouseleave", hide);
    attached = gd;
  };
  attach();
  const watch = setInterval(attach, 500);  // the chart may be drawn after this script, or drawn anew
  return () => {
    clearInterval(watch);
    hide();
    if (attached && attached.removeListener) {
      attached.removeListener("plotly_hover", onHover);
      attached.removeListener("plotly_unhover", hide);
      attached.removeEventListener("mouseleave", hide);
    }
  };
}
"""

_component = None


def mount(key: str, chart_key: str) -> None:
    """Put the hover script on the page for the chart drawn with ``st.plotly_chart(..., key=chart_key)``."""
    global _component
    import streamlit as st

    if _component is None:
        _component = st.components.v2.component("vitpro_map_hover", js=JS)
    _component(key="map_hover", data={"key": key, "chart": f"st-key-{chart_key}"}, height="content")
