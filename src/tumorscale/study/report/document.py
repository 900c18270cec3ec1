"""The report as a document: one list of blocks, rendered to Markdown and to HTML alike.

The HTML is self-contained: CSS inline, every plot embedded as a base64 PNG, no scripts and no
external URLs, so it opens offline. `markdown_to_html` renders the small, safe Markdown subset
of headline text (headings, bullets, pipe tables, paragraphs, `code` and **bold**).
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class FigureFiles:
    png: Path
    svg: Path
    caption: str
    title: str  # short text for the image's alt attribute


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Bullets:
    items: list[str]


@dataclass(frozen=True)
class Table:
    header: list[str]
    rows: list[list[str]]
    caption: str | None = None


@dataclass(frozen=True)
class MarkdownText:
    """Markdown from another module (the fit's headlines): verbatim in report.md, rendered by
    `markdown_to_html` in report.html."""

    text: str


Block = Heading | Paragraph | Bullets | Table | MarkdownText | FigureFiles


def _md_text(text: str) -> str:
    # An opening angle bracket would read as an HTML tag to a Markdown renderer.
    return text.replace("<", "&lt;")


def _md_cell(text: str) -> str:
    return _md_text(text).replace("|", "\\|").replace("\n", " ")


def to_markdown(blocks: Sequence[Block], base: Path) -> str:
    parts = []
    for block in blocks:
        if isinstance(block, Heading):
            parts.append(f"{'#' * block.level} {_md_text(block.text)}")
        elif isinstance(block, Paragraph):
            parts.append(_md_text(block.text))
        elif isinstance(block, Bullets):
            parts.append("\n".join(f"- {_md_text(item)}" for item in block.items))
        elif isinstance(block, MarkdownText):
            parts.append(block.text)
        elif isinstance(block, Table):
            parts.append(_md_table(block))
        elif isinstance(block, FigureFiles):
            png, svg = (p.relative_to(base).as_posix() for p in (block.png, block.svg))
            caption = _md_text(block.caption)
            parts.append(f"![{_md_cell(block.title)}]({png})\n\n*{caption}* ([SVG]({svg}))")
    return "\n\n".join(parts) + "\n"


def _md_table(table: Table) -> str:
    lines = [f"**{_md_text(table.caption)}**\n"] if table.caption else []
    lines.append("| " + " | ".join(_md_cell(h) for h in table.header) + " |")
    lines.append("|" + "---|" * len(table.header))
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in table.rows]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# HTML (self-contained: inline CSS, base64 images, no scripts, no external URLs)

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1180px;
       margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; } h2 { margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.8em 0 1.4em; font-size: 0.88em; }
caption { text-align: left; font-weight: 600; padding-bottom: 0.3em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; } th { background: #f3f3f3; }
figure { margin: 1em 0 2em; } figure img { max-width: 100%; height: auto; }
figcaption { font-size: 0.88em; color: #444; }
.headline { background: #f7f9fc; border-left: 4px solid #1f77b4; padding: 0.4em 1em; }
code { background: #f2f2f2; padding: 0 0.2em; }
"""


def _inline(text: str) -> str:
    """Escape, then allow the two inline marks our Markdown uses: `code` and **bold**."""
    escaped = html.escape(text, quote=True)
    escaped = re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", escaped)


_BULLET = re.compile(r"^\s*[-*+]\s+")


def markdown_to_html(text: str) -> str:
    """A small, safe Markdown subset (headings, bullets, pipe tables, paragraphs) for fit.md."""
    out: list[str] = []
    for chunk in re.split(r"\n\s*\n", text.strip()):
        lines = [line.rstrip() for line in chunk.splitlines() if line.strip()]
        out += _markdown_chunk(lines)
    return "\n".join(out)


def _markdown_chunk(lines: list[str]) -> Iterator[str]:
    paragraph: list[str] = []
    index = 0
    while index < len(lines):
        line = lines[index].strip()
        if heading := re.match(r"^(#{1,6})\s+(.*)$", line):
            yield from _flush(paragraph)
            level = len(heading.group(1))
            yield f"<h{level}>{_inline(heading.group(2))}</h{level}>"
        elif re.match(r"^[-*+]\s+", line):
            yield from _flush(paragraph)
            items = []
            while index < len(lines) and _BULLET.match(lines[index]):
                item = _BULLET.sub("", lines[index])
                items.append(f"<li>{_inline(item)}</li>")
                index += 1
            yield "<ul>" + "".join(items) + "</ul>"
            continue
        elif line.startswith("|"):
            yield from _flush(paragraph)
            rows = []
            while index < len(lines) and lines[index].strip().startswith("|"):
                rows.append(lines[index].strip())
                index += 1
            yield _pipe_table_html(rows)
            continue
        else:
            paragraph.append(line)
        index += 1
    yield from _flush(paragraph)


def _flush(paragraph: list[str]) -> Iterator[str]:
    if paragraph:
        yield f"<p>{_inline(' '.join(paragraph))}</p>"
        paragraph.clear()


def _pipe_table_html(rows: list[str]) -> str:
    cells = [[c.strip() for c in re.split(r"(?<!\\)\|", row.strip("|"))] for row in rows]
    cells = [[c.replace("\\|", "|") for c in row] for row in cells]
    body = [row for row in cells if not all(re.fullmatch(r":?-{2,}:?", c) for c in row if c)]
    if not body:
        return ""
    return _html_table(Table(body[0], body[1:]), inline_marks=True)


def _html_table(table: Table, inline_marks: bool = False) -> str:
    text = _inline if inline_marks else html.escape
    parts = ["<table>"]
    if table.caption:
        parts.append(f"<caption>{text(table.caption)}</caption>")
    parts.append("<tr>" + "".join(f"<th>{text(h)}</th>" for h in table.header) + "</tr>")
    parts += ["<tr>" + "".join(f"<td>{text(c)}</td>" for c in row) + "</tr>" for row in table.rows]
    return "\n".join([*parts, "</table>"])


def _html_figure(figure: FigureFiles) -> str:
    encoded = base64.b64encode(figure.png.read_bytes()).decode("ascii")
    caption = html.escape(figure.caption)
    return (
        f'<figure><img src="data:image/png;base64,{encoded}" alt="{html.escape(figure.title)}">'
        f"<figcaption>{caption}</figcaption></figure>"
    )


def _html_block(block: Block) -> str:
    if isinstance(block, Heading):
        return f"<h{block.level}>{_inline(block.text)}</h{block.level}>"
    if isinstance(block, Paragraph):
        return f"<p>{_inline(block.text)}</p>"
    if isinstance(block, Bullets):
        return "<ul>" + "".join(f"<li>{_inline(item)}</li>" for item in block.items) + "</ul>"
    if isinstance(block, MarkdownText):
        return f'<div class="headline">{markdown_to_html(block.text)}</div>'
    if isinstance(block, Table):
        return _html_table(block)
    return _html_figure(block)


def to_html(blocks: Sequence[Block], title: str) -> str:
    body = "\n".join(_html_block(block) for block in blocks)
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{html.escape(title)}</title>\n'
        f"<style>{CSS}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
    )
