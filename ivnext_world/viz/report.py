"""The HTML index of a run: sections of text, tables, images and videos, written atomically.

Each stage of a job adds its section and calls :meth:`Report.write`, so the page is readable (and
correct so far) while the job is still running and after it is killed.
"""
from __future__ import annotations

import html
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Mapping

from ..utils.io import atomic_write_text


@dataclass
class Section:
    title: str
    text: str = ""
    table: dict[str, str] = field(default_factory=dict)
    images: list[str] = field(default_factory=list)  # paths relative to the report folder
    videos: list[str] = field(default_factory=list)
    warning: str = ""  # shown in red, e.g. "image teacher has random weights"
    # the section's verdict against its baseline: {"label": "PASS" | "FALLS SHORT" | ..., "baseline", "detail"}
    verdict: dict = field(default_factory=dict)


class Report:
    def __init__(self, out_dir: str | os.PathLike, title: str):
        self.out_dir = Path(out_dir)
        self.title = title
        self.sections: list[Section] = []

    def add(
        self,
        title: str,
        text: str = "",
        table: Mapping[str, object] | None = None,
        images: list[str | os.PathLike] = (),
        videos: list[str | os.PathLike] = (),
        warning: str = "",
        verdict=None,
    ) -> Section:
        """``verdict``: an :class:`ivnext_world.verdicts.Verdict` (or its dict), shown under the title."""
        section = Section(
            title=title,
            text=text,
            table={str(k): str(v) for k, v in (table or {}).items()},
            images=[self._rel(p) for p in images],
            videos=[self._rel(p) for p in videos],
            warning=warning,
            verdict=_verdict_dict(verdict),
        )
        self.sections.append(section)
        return section

    def _rel(self, p: str | os.PathLike) -> str:
        p = Path(p)
        if not p.exists():
            raise FileNotFoundError(f"report asset {p} does not exist")
        return os.path.relpath(p.resolve(), self.out_dir.resolve())

    def write(self) -> Path:
        """Write ``index.html`` and a machine-readable ``report.json`` beside it."""
        body = [f"<h1>{html.escape(self.title)}</h1>"]
        for s in self.sections:
            body.append(f"<h2>{html.escape(s.title)}</h2>")
            if s.verdict:
                v = s.verdict
                cls = {"PASS": "pass", "FALLS SHORT": "short"}.get(v["label"], "nj")
                body.append(f'<p class="{cls}">{html.escape(v["label"])} against {html.escape(v["baseline"])}: '
                            f'{html.escape(v.get("detail", ""))}</p>')
            if s.warning:
                body.append(f'<p class="warn">{html.escape(s.warning)}</p>')
            if s.text:
                body.append(f"<p>{html.escape(s.text)}</p>")
            if s.table:
                rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in s.table.items())
                body.append(f"<table>{rows}</table>")
            body += [f'<p><a href="{html.escape(i)}"><img src="{html.escape(i)}"></a></p>' for i in s.images]
            body += [f'<p><video src="{html.escape(v)}" controls loop></video></p>' for v in s.videos]
        page = (
            "<!doctype html><html><head><meta charset='utf-8'>"
            f"<title>{html.escape(self.title)}</title><style>"
            "body{font-family:sans-serif;max-width:1200px;margin:auto;padding:1em}"
            "img,video{max-width:100%}th{text-align:left;padding-right:1em}.warn{color:#b00;font-weight:bold}"
            ".pass{color:#060;font-weight:bold}.short{color:#b60;font-weight:bold}.nj{color:#555;font-weight:bold}"
            "</style></head><body>" + "\n".join(body) + "</body></html>"
        )
        atomic_write_text(self.out_dir / "report.json", json.dumps([asdict(s) for s in self.sections], indent=2))
        return atomic_write_text(self.out_dir / "index.html", page)


def _verdict_dict(verdict) -> dict:
    if verdict is None:
        return {}
    d = verdict if isinstance(verdict, dict) else verdict.to_dict()
    return {"label": d["label"], "baseline": d["baseline"], "detail": d.get("detail", "")}
