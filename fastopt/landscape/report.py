"""The report folder of ``fastopt landscape``: each result's ``.npz``, its figures (PNG and SVG)
and an ``index.html`` showing the figures with the run's metadata.

The page counts, once everything has loaded, the images that failed to load and writes the count
into ``<p id="image-check" data-broken="N" data-images="M">`` (what the headless-browser test
reads)."""

import html
import json
import os

__all__ = ["Section", "write_report"]


class Section:
    """One result of the report: a ``name`` (file stem), a heading, a caption, the result, and the
    figures to draw: ``(suffix, draw)`` pairs, ``draw(result)`` returning a ``Figure``."""

    def __init__(self, name, heading, caption, result, figures):
        self.name, self.heading, self.caption = name, heading, caption
        self.result, self.figures = result, figures


_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto;
       max-width: 1100px; color: #222; line-height: 1.45; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }
table.meta { border-collapse: collapse; font-size: 0.9em; }
table.meta td { padding: 0.15em 0.8em 0.15em 0; vertical-align: top; }
table.meta td:first-child { color: #666; white-space: nowrap; }
figure { margin: 1em 0; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption, .files { font-size: 0.85em; color: #555; }
#image-check { font-size: 0.8em; color: #888; }
"""

_CHECK = """
window.addEventListener("load", function () {
  var images = document.images, broken = 0;
  for (var i = 0; i < images.length; i++) {
    if (!images[i].complete || images[i].naturalWidth === 0) broken++;
  }
  var p = document.getElementById("image-check");
  p.setAttribute("data-broken", broken);
  p.setAttribute("data-images", images.length);
  p.textContent = broken + " of " + images.length + " images failed to load";
});
"""


def _table(meta):
    rows = "".join(f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(_text(v))}</td></tr>"
                   for k, v in meta.items())
    return f'<table class="meta">{rows}</table>'


def _text(value):
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, default=str)
    return str(value)


def write_report(out, title, meta, sections, formats=("png", "svg"), progress=None):
    """Writes every section's ``.npz`` and figures into the folder ``out`` (created if needed)
    and an ``index.html`` showing them; returns the path of ``index.html``.

    ``meta``: the run's metadata (a table at the top); ``formats``: the figure formats (the page
    shows the first and links the others); ``progress``: called with each file written."""
    from fastopt.landscape.plots import pyplot

    plt = pyplot()  # a clear ImportError before anything is written
    os.makedirs(out, exist_ok=True)
    body = [f"<h1>{html.escape(title)}</h1>", _table(meta)]
    for section in sections:
        data = section.result.save(os.path.join(out, f"{section.name}.npz"))
        body.append(f'<h2 id="{section.name}">{html.escape(section.heading)}</h2>')
        body.append(f"<p>{html.escape(section.caption)}</p>")
        for suffix, draw in section.figures:
            stem = section.name + (f"_{suffix}" if suffix else "")
            figure = draw(section.result)
            paths = []
            for fmt in formats:
                path = os.path.join(out, f"{stem}.{fmt}")
                figure.savefig(path, dpi=130, bbox_inches="tight")
                paths.append(os.path.basename(path))
                if progress:
                    progress(path)
            plt.close(figure)
            links = " · ".join(f'<a href="{p}">{p.rsplit(".", 1)[1].upper()}</a>'
                               for p in paths)
            body.append(f'<figure><img src="{paths[0]}" alt="{html.escape(stem)}">'
                        f"<figcaption>{links}</figcaption></figure>")
        body.append(f'<p class="files">arrays: <a href="{os.path.basename(data)}">'
                    f"{os.path.basename(data)}</a> — metadata: "
                    f"{html.escape(_text(section.result.meta))}</p>")
    page = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{_STYLE}</style>"
            f"<script>{_CHECK}</script></head><body>\n" + "\n".join(body)
            + '\n<p id="image-check">checking images…</p>\n</body></html>\n')
    index = os.path.join(out, "index.html")
    with open(index, "w", encoding="utf-8") as f:
        f.write(page)
    return index
