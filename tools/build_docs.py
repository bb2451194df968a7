"""Build a static HTML docs site from the executed notebooks with nbconvert, for machines without Quarto.

Usage: python tools/build_docs.py [--nbs nbs] [--out _docs]
       python tools/build_docs.py --readme README.md   (README.md from nbs/index.ipynb)

Each notebook becomes one page named as nbdev names it (`00_models.ipynb` -> `models.html`), in the order of
`nbs/sidebar.yml`. Hidden cells and nbdev directives are dropped, plotly figures are drawn with a local copy of
plotly.js (the site works offline), widgets are replaced by a note, links between notebooks point at the pages, and
each module page ends with its API: the exported names with their signatures, docstrings and parameters. The
development logs in `nbs/logs/*.md` become pages of their own, and links to them point at those pages.
"""
from __future__ import annotations

import argparse
import copy
import html
import importlib
import inspect
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import nbformat
import yaml
from nbconvert import HTMLExporter, MarkdownExporter
from nbdev.config import nbpath2html
from pygments.formatters import HtmlFormatter

PLOTLY = "application/vnd.plotly.v1+json"
WIDGET = "application/vnd.jupyter.widget-view+json"
_directive = re.compile(r"^\s*#\s*\|\s*(.*)$")
_nblink = re.compile(r"\]\((?!https?:)([^)#\s]+)\.ipynb(#[^)]*)?\)")
_mdlink = re.compile(r"\]\(logs/([^/)#\s]+)\.md(#[^)]*)?\)")  # a page of nbs/logs, which the site puts beside the notebooks

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} – tttlab</title><link rel="stylesheet" href="site.css"><script src="plotly.min.js"></script></head>
<body><nav class="sidebar"><a class="brand" href="index.html">tttlab</a><ul>{nav}</ul></nav>
<main>{body}</main></body></html>
"""

CSS = """body{margin:0;font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;display:flex;color:#222}
.sidebar{width:230px;min-height:100vh;background:#f6f8fa;border-right:1px solid #ddd;padding:16px;box-sizing:border-box;
position:sticky;top:0;align-self:flex-start}
.sidebar ul{list-style:none;padding:0}.sidebar li{margin:6px 0}.sidebar a{text-decoration:none;color:#0b5394}
.sidebar a.current{font-weight:bold}.brand{font-size:1.4em;font-weight:bold}
main{max-width:980px;padding:16px 32px;overflow-x:auto;flex:1}
pre{background:#f6f8fa;padding:8px;overflow-x:auto;border-radius:4px;margin:0}.output_area pre{background:#fff}
blockquote{color:#555;border-left:4px solid #ccc;margin-left:0;padding-left:12px}
table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:3px 8px}img{max-width:100%}
.prompt{display:none}.anchor-link{visibility:hidden;text-decoration:none;margin-left:6px;color:#999}
h1:hover .anchor-link,h2:hover .anchor-link,h3:hover .anchor-link{visibility:visible}
.code_cell{margin:10px 0}.output_area{border-left:3px solid #ddd;padding-left:8px;overflow-x:auto}
.widget-note{color:#777;font-style:italic}.api h3{font-family:monospace}.api .sig{background:#f6f8fa;padding:6px}
"""


def page_name(nb: Path) -> str:
    "The page a notebook becomes, as nbdev names it."
    return nbpath2html(Path(nb.name)).name


def notebook_order(nbs: Path) -> list[Path]:
    "The notebooks in sidebar order: `sidebar.yml` first, then any it does not list, by name."
    listed: list[str] = []
    sidebar = nbs / "sidebar.yml"
    if sidebar.exists():
        def walk(items):
            for it in items or []:
                if isinstance(it, str): listed.append(it)
                elif isinstance(it, dict): walk(it.get("contents")); it.get("href") and listed.append(it["href"])
        walk(yaml.safe_load(sidebar.read_text())["website"]["sidebar"]["contents"])
    found = sorted(p for p in nbs.glob("*.ipynb") if not p.name.startswith(("_", ".")))
    order = [nbs / n for n in listed if (nbs / n).suffix == ".ipynb" and (nbs / n).exists()]
    return order + [p for p in found if p not in order]


def directives(source: str) -> tuple[dict[str, str], str]:
    "Split a code cell into its nbdev directives and the rest of its source."
    found, rest = {}, []
    for line in source.splitlines():
        m = _directive.match(line)
        if m and not rest:
            key, _, val = m.group(1).partition(" ")
            found[key.rstrip(":")] = val.strip()
        else: rest.append(line)
    return found, "\n".join(rest).strip()


def plotly_html(fig: dict, n: int) -> str:
    "A div and a script that draw a plotly figure spec with the page's plotly.js."
    spec = json.dumps({"data": fig.get("data", []), "layout": fig.get("layout", {})}).replace("</", "<\\/")
    return (f'<div id="plot-{n}" class="tttlab-plot"></div><script>Plotly.newPlot("plot-{n}", {spec}.data, '
            f'{spec}.layout, {{responsive: true}});</script>')


def prepare(nb: nbformat.NotebookNode) -> tuple[nbformat.NotebookNode, str | None, str]:
    "Drop hidden cells and directives, draw plots offline, fix links; return the notebook, its module and title."
    nb, module, title, cells, n = copy.deepcopy(nb), None, "", [], 0
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = _nblink.sub(lambda m: f"]({page_name(Path(m.group(1) + '.ipynb'))}{m.group(2) or ''})", cell.source)
            cell.source = _mdlink.sub(lambda m: f"]({m.group(1)}.html{m.group(2) or ''})", cell.source)
            if not title and (m := re.search(r"^#\s+(.+)$", cell.source, re.M)): title = m.group(1).strip()
            cells.append(cell)
            continue
        if cell.cell_type != "code": continue
        flags, cell.source = directives(cell.source)
        if "default_exp" in flags: module = flags["default_exp"]
        if "hide" in flags or "default_exp" in flags or not cell.source: continue
        if flags.get("echo") == "false": cell.source = ""
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if PLOTLY in data:
                n += 1
                out["data"] = {"text/html": plotly_html(data[PLOTLY], n)}
            elif WIDGET in data:
                out["data"] = {"text/html": "<p class='widget-note'>(an interactive widget: run the notebook to use it)</p>"}
        cells.append(cell)
    nb.cells = cells
    return nb, module, title


def api_html(module: str) -> str:
    "The API section of a module's page: each exported name with its signature, docstring and parameters."
    from fastcore.docments import docments
    try: mod = importlib.import_module(f"tttlab.{module}")
    except Exception as e: return f"<section class='api'><h2>API</h2><p>tttlab.{module} could not be imported: {html.escape(str(e))}</p></section>"
    parts = [f"<section class='api'><h2 id='api'>API: <code>tttlab.{module}</code></h2>"]
    for name in getattr(mod, "__all__", []):
        obj = getattr(mod, name, None)
        if not (inspect.isclass(obj) or inspect.isfunction(obj)): continue
        try: sig = str(inspect.signature(obj))
        except (TypeError, ValueError): sig = "(…)"
        kind = "class" if inspect.isclass(obj) else "def"
        parts.append(f"<h3 id='{html.escape(name)}'>{html.escape(name)}</h3><div class='sig'><code>{kind} {html.escape(name)}"
                     f"{html.escape(sig)}</code></div><p>{html.escape(inspect.getdoc(obj) or '')}</p>")
        try: docs = {k: v for k, v in docments(obj, full=True).items() if k != "return" and v.get("docment")}
        except Exception: docs = {}
        if docs:
            parts.append("<table><tr><th>parameter</th><th>default</th><th></th></tr>" + "".join(
                f"<tr><td><code>{html.escape(k)}</code></td><td><code>{html.escape(repr(v['default']) if v['default'] is not inspect._empty else '')}</code></td>"
                f"<td>{html.escape(v['docment'])}</td></tr>" for k, v in docs.items()) + "</table>")
    return "".join(parts) + "</section>"


def build(nbs: Path = Path("nbs"), out: Path = Path("_docs")) -> list[Path]:
    "Build the site from the notebooks in `nbs` into `out`, atomically; return the pages written."
    nbs, out = Path(nbs), Path(out)
    order = notebook_order(nbs)
    prepared = [(p, *prepare(nbformat.read(p, as_version=4))) for p in order]
    logs = [(p, *prepare(nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(p.read_text())])))
            for p in sorted(nbs.glob("logs/*.md"))]  # development logs: markdown pages the notebooks link to
    titles = {page_name(p): (title or p.stem) for p, _, _, title in prepared} | {f"{p.stem}.html": title or p.stem for p, _, _, title in logs}
    has_index = "index.html" in titles
    nav_items = ([] if has_index else [("index.html", "Home")]) + list(titles.items())
    exporter = HTMLExporter(template_name="basic")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    tmp.chmod(0o755)
    try:
        pages = []
        def write(name: str, title: str, body: str):
            nav = "".join(f'<li><a href="{h}"{" class=current" if h == name else ""}>{html.escape(t)}</a></li>' for h, t in nav_items)
            (tmp / name).write_text(PAGE.format(title=html.escape(title), nav=nav, body=body))
            pages.append(out / name)
        for p, nb, module, title in prepared:
            body, _ = exporter.from_notebook_node(nb)
            write(page_name(p), titles[page_name(p)], body + (api_html(module) if module else ""))
        for p, nb, _, _ in logs: write(f"{p.stem}.html", titles[f"{p.stem}.html"], exporter.from_notebook_node(nb)[0])
        if not has_index:
            items = "".join(f'<li><a href="{h}">{html.escape(t)}</a></li>' for h, t in titles.items())
            write("index.html", "tttlab", "<h1>tttlab</h1><p>A test-time-training laboratory for PyTorch.</p>"
                  "<p>On a CPU use the offline default model; on a T4 GPU choose <code>TinyLlama/TinyLlama-1.1B-Chat-v1.0</code>.</p>"
                  f"<ul>{items}</ul>")
        (tmp / "site.css").write_text(CSS + HtmlFormatter().get_style_defs(".highlight"))
        import plotly
        shutil.copy(Path(plotly.__file__).parent / "package_data" / "plotly.min.js", tmp / "plotly.min.js")
        if (nbs / "images").is_dir(): shutil.copytree(nbs / "images", tmp / "images")
        old = out.with_name(f".{out.name}-old")
        if out.exists(): os.replace(out, old)
        os.replace(tmp, out)
        if old.exists(): shutil.rmtree(old)
    finally:
        if tmp.exists(): shutil.rmtree(tmp, ignore_errors=True)
    return pages


def readme(index: Path = Path("nbs/index.ipynb"), out: Path = Path("README.md")) -> Path:
    "Write `out` from the index notebook as GitHub markdown, without hidden cells or directives, atomically."
    nb = nbformat.read(index, as_version=4)
    cells = []
    for cell in nb.cells:
        if cell.cell_type == "code":
            flags, cell.source = directives(cell.source)
            if "hide" in flags or not cell.source: continue
        cells.append(cell)
    nb.cells = cells
    text, _ = MarkdownExporter().from_notebook_node(nb)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, out)
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nbs", default="nbs", help="folder of executed notebooks")
    ap.add_argument("--out", default="_docs", help="folder to write the site to")
    ap.add_argument("--readme", metavar="FILE", help="write FILE from the index notebook instead of building the site")
    a = ap.parse_args()
    if a.readme: print(f"wrote {readme(Path(a.nbs) / 'index.ipynb', Path(a.readme))}")
    else: print(f"wrote {len(pages := build(Path(a.nbs), Path(a.out)))} pages to {a.out}/ (open {a.out}/index.html)")
