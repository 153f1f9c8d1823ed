"""``ivnext-prepare-videos``: re-encode a video corpus to H.264 for fast random access on a cluster.

Examples::

    ivnext-prepare-videos kinetics/train.csv --short-side 256 --gop 16 --out /scratch/k400_256 --workers 16
    ivnext-prepare-videos raw_videos/ --out prepared/          # a folder: every video under it

Writes ``<out>/videos/...``, a manifest in the input's format (``<out>/<manifest name>``, or
``<out>/manifest.csv`` for a folder) and ``<out>/report.json`` listing the inputs that could not be
decoded (left out, not fatal). Rerunning skips finished outputs. See :mod:`ivnext_world.data.prepare`.
"""
from __future__ import annotations

import argparse
import json
import sys

from ..data.video_io import DEFAULT_CRF


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="ivnext-prepare-videos", description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n", 2)[2])
    ap.add_argument("source", help="a .csv / .jsonl manifest or a folder of videos")
    ap.add_argument("--out", required=True, help="output folder (rerun with the same one to resume)")
    ap.add_argument("--short-side", type=int, default=256, help="short side of the outputs in pixels (never upscaled)")
    ap.add_argument("--gop", type=int, default=16, help="frames between keyframes: bounds the decoding per random read")
    ap.add_argument("--crf", type=int, default=DEFAULT_CRF, help="x264 quality (lower: better, larger)")
    ap.add_argument("--workers", type=int, default=1, help="parallel encoder processes")
    ap.add_argument("--no-progress", action="store_true")
    return ap


def main(argv: list[str] | None = None) -> None:
    from ..data.prepare import PrepareSettings, prepare_videos

    args = build_parser().parse_args(argv)
    if args.short_side < 2 or args.gop < 1 or args.workers < 1:
        build_parser().error("--short-side must be >= 2, --gop and --workers >= 1")
    try:
        report = prepare_videos(args.source, args.out, PrepareSettings(args.short_side, args.gop, args.crf),
                                workers=args.workers, progress=not args.no_progress)
    except (FileNotFoundError, ValueError) as err:
        print(f"ivnext-prepare-videos: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    summary = {k: report[k] for k in ("manifest", "videos", "encoded", "already_done", "seconds")}
    summary["failed"] = len(report["failed"])
    print(json.dumps(summary))
    if report["failed"]:
        print(f"{len(report['failed'])} input(s) could not be decoded and were left out; see {args.out}/report.json",
              file=sys.stderr)


if __name__ == "__main__":
    main()
