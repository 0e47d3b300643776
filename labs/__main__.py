"""The lab's command line, behind the Makefile targets.

    python -m labs db            start (or find) the server and print its URL
    python -m labs db-stop       stop the lab's own local server
    python -m labs doctor        say what works and what to fix
    python -m labs data [SCALE]  build the dataset template at a scale
    python -m labs ensure-data   build the default scale's template if missing
    python -m labs notebooks [--check]   regenerate learner notebooks
    python -m labs grade DIR [--out DIR] [--timeout S] [--notebook-timeout S] [-j N] [--keep]
    python -m labs map           the course map: each challenge, what it needs, level, time
    python -m labs progress      your checks passed, challenge by challenge, and what is next
    python -m labs jupyterlab-settings   JupyterLab defaults for the lab (no news pop-up)
    python -m labs site [--scale S] [--only NN,...] [--out DIR] [--keep]
                                 execute every solution and render it into a static site

Lab errors are printed as their learner-facing message, without a traceback.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import sys

from .runtime.errors import LabError


def cmd_db(args: argparse.Namespace) -> int:
    from .runtime.server import describe_url, ensure_server

    srv = ensure_server(verbose=True)
    print(f"PostgreSQL {srv.version // 10000} ({srv.kind}) ready at {describe_url(srv.url)}")
    return 0


def cmd_db_stop(args: argparse.Namespace) -> int:
    from .runtime.satellites import stop as stop_satellites
    from .runtime.server import stop_local

    for name in stop_satellites():  # PgBouncer and the replica first: they follow the server
        print(f"Stopped {name}.")
    print("Stopped the lab's PostgreSQL." if stop_local() else "The lab's PostgreSQL was not running.")
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    from .runtime.config import current_scale
    from .data.dataset import build_template, ensure_template
    from .runtime.server import ensure_server

    scale = current_scale(args.scale)
    srv = ensure_server(verbose=True)
    if args.if_missing:
        info = ensure_template(srv, scale, build_if_missing=True)
    else:
        info = build_template(srv, scale, progress=True)
    print(f"Dataset '{scale.name}' ready: " + ", ".join(
        f"{table} {count:,}" for table, count in info.get("row_counts", {}).items()))
    return 0


def cmd_notebooks(args: argparse.Namespace) -> int:
    from .course.learner import generate_all

    stale = generate_all(check_only=args.check)
    if args.check:
        if stale:
            print("Stale notebooks (run `make notebooks`): "
                  + ", ".join(f"{p.parent.name}/{p.name}" for p in stale))
            return 1
        print("Learner notebooks are up to date.")
        return 0
    print("Wrote " + (", ".join(f"{p.parent.name}/{p.name}" for p in stale) if stale
                      else "nothing (all up to date)"))
    return 0


def cmd_grade(args: argparse.Namespace) -> int:
    from .course.grading import grade

    report = grade(args.submissions, out_dir=args.out, cell_timeout=args.timeout,
                   notebook_timeout=args.notebook_timeout, jobs=args.jobs, keep=args.keep,
                   progress=sys.stderr.isatty() and not args.no_progress)
    print(report.markdown())
    print(f"Report written to {args.out}/report.csv and {args.out}/report.md")
    # the exit status says whether grading worked, not whether the learners did
    return 1 if report.errors else 0


def cmd_map(args: argparse.Namespace) -> int:
    from .course.catalogue import course_map

    course_map()
    return 0


def cmd_progress(args: argparse.Namespace) -> int:
    from .course.progress import show

    show()
    return 0


def cmd_jupyterlab_settings(args: argparse.Namespace) -> int:
    from .runtime.jupyterlab import configure

    configure()
    return 0


def cmd_site(args: argparse.Namespace) -> int:
    from .course.site import build

    result = build(args.scale, args.only, out=args.out, keep=args.keep,
                   progress=not args.no_progress)
    for page in result.pages:
        print(f"{page.href:<28} {page.seconds:7.1f} s  {page.scale}, {page.server}")
    print(f"Open {result.out.resolve() / 'index.html'}")
    if result.problems:
        print("Rendered, but these did not run cleanly (full text in manifest.json):\n  "
              + "\n  ".join(p.splitlines()[0][:200] for p in result.problems), file=sys.stderr)
        return 1
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from .runtime import server
    from .runtime.config import SCALES, current_scale

    ok = True
    print(f"Python      {sys.version.split()[0]} at {sys.executable}")
    for dist in ("psycopg", "SQLAlchemy", "pandas", "jupysql", "jupyterlab", "nbval", "Faker",
                 "alembic", "squawk-cli"):
        try:
            print(f"{dist:<11} {importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            ok = False
            print(f"{dist:<11} MISSING: run `make install`")
    if os.geteuid() == 0:
        print("You are root: the lab's own server runs as an unprivileged user (postgres).")
    if os.environ.get("DATABASE_URL"):
        print(f"DATABASE_URL {server.describe_url(os.environ['DATABASE_URL'])}")
    else:
        bindir = server.find_bindir(server.requested_major())
        print(f"Server programs: {bindir or 'not found'}; Docker engine: "
              f"{'yes' if server.docker_engine_answers() else 'no'}")
    try:
        srv = server.ensure_server(verbose=True)
        print(f"Server      PostgreSQL {srv.version // 10000}.{srv.version % 10000} "
              f"({srv.kind}) at {server.describe_url(srv.url)}")
    except LabError as exc:
        print("Server      NOT AVAILABLE\n" + exc.render())
        return 1
    from .data.dataset import template_exists

    chosen = current_scale()
    for name, scale in SCALES.items():
        mark = "built" if template_exists(srv, scale) else "not built (make data SCALE=" + name + ")"
        star = " <- LAB_SCALE" if name == chosen.name else ""
        print(f"Dataset     {name:<10} {mark}{star}")
    print("All good." if ok else "Something is missing: see above.")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m labs", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("db").set_defaults(func=cmd_db)
    sub.add_parser("db-stop").set_defaults(func=cmd_db_stop)
    sub.add_parser("doctor").set_defaults(func=cmd_doctor)
    data = sub.add_parser("data")
    data.add_argument("scale", nargs="?")
    data.add_argument("--if-missing", action="store_true")
    data.set_defaults(func=cmd_data)
    nbs = sub.add_parser("notebooks")
    nbs.add_argument("--check", action="store_true")
    nbs.set_defaults(func=cmd_notebooks)
    grade = sub.add_parser("grade")
    grade.add_argument("submissions")
    grade.add_argument("--out", default="grading-report")
    grade.add_argument("--timeout", type=int, default=None,
                       help="seconds a cell may run (default by scale: tiny 120, small 300)")
    grade.add_argument("--notebook-timeout", type=int, default=None,
                       help="seconds a notebook may run (default by scale: tiny 300, small 480)")
    grade.add_argument("-j", "--jobs", type=int, default=2,
                       help="notebooks graded at once (at most one per core)")
    grade.add_argument("--keep", action="store_true",
                       help="keep each graded notebook's databases and role, for inspection")
    grade.add_argument("--no-progress", action="store_true")
    grade.set_defaults(func=cmd_grade)
    sub.add_parser("map").set_defaults(func=cmd_map)
    sub.add_parser("progress").set_defaults(func=cmd_progress)
    sub.add_parser("jupyterlab-settings").set_defaults(func=cmd_jupyterlab_settings)
    site = sub.add_parser("site", help="execute every solution into a static site")
    site.add_argument("--scale", default=None, help="tiny, small (default), production")
    site.add_argument("--only", default=None, help="challenges by number or topic: 00,07")
    site.add_argument("--out", default=None, help="folder of the site (default: site/)")
    site.add_argument("--keep", action="store_true",
                      help="keep the build's challenge databases, for inspection")
    site.add_argument("--no-progress", action="store_true")
    site.set_defaults(func=cmd_site)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except LabError as exc:
        print(exc.render(), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
