"""Images as the pages show them: a small JPEG thumbnail for a gallery tile and a downscaled copy in a
plotly figure for zoom and pan, both made with PIL and cached by (path, modification time, size), so a
tile never decodes the full photo twice and a changed file is read again."""
from __future__ import annotations

import base64
import io
from pathlib import Path

import streamlit as st

ZOOM_MAX_SIDE = 1600  # px: the longest side of the copy a zoomable figure carries
THUMB_SIDE = 256


def _mtime(path: str) -> float | None:
    try:
        return Path(path).stat().st_mtime
    except OSError:
        return None


@st.cache_data(show_spinner=False, max_entries=2048)
def _jpeg(path: str, mtime: float, side: int, quality: int) -> tuple[bytes, int, int]:
    from PIL import Image

    with Image.open(path) as im:
        im.draft("RGB", (side, side))  # JPEG: decode at a fraction of full size straight away
        im = im.convert("RGB")
        im.thumbnail((side, side))
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=quality)
        return buf.getvalue(), im.width, im.height


def thumbnail(path: str, side: int = THUMB_SIDE) -> bytes | None:
    """A JPEG at most ``side`` px on its longest side, or None when the file is missing or unreadable."""
    mtime = _mtime(path)
    if mtime is None:
        return None
    try:
        return _jpeg(path, mtime, side, 80)[0]
    except OSError:
        return None


def zoom_figure(path: str, max_side: int = ZOOM_MAX_SIDE):
    """A plotly figure of the image (a copy at most ``max_side`` px) that zooms with the wheel and pans by
    dragging, axes hidden; raises OSError when the file cannot be read."""
    import plotly.graph_objects as go

    mtime = _mtime(path)
    if mtime is None:
        raise OSError(f"image file missing: {path}")
    data, w, h = _jpeg(path, mtime, max_side, 90)
    fig = go.Figure(go.Image(source="data:image/jpeg;base64," + base64.b64encode(data).decode("ascii")))
    fig.update_xaxes(visible=False, showgrid=False)
    fig.update_yaxes(visible=False, showgrid=False, scaleanchor="x")
    fig.update_layout(margin=dict(l=0, r=0, t=0, b=0), dragmode="pan", height=min(720, max(240, round(560 * h / max(w, 1)))))
    return fig


ZOOM_CONFIG = {"scrollZoom": True, "displaylogo": False, "modeBarButtonsToRemove": ["select2d", "lasso2d"]}


def show_zoomable(path: str, key: str) -> None:
    """The image as a zoomable figure; the plain image where the figure cannot be made."""
    try:
        st.plotly_chart(zoom_figure(path), config=ZOOM_CONFIG, key=key, width="stretch")
    except Exception:  # noqa: BLE001 - any failure to draw the figure falls back to the plain image
        if Path(path).is_file():
            st.image(path, width="stretch")
        else:
            st.warning(f"image file missing: {Path(path).name}")
