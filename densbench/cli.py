"""The ``densbench`` command: thin, it parses, calls the library and prints.

Exit codes: 0 success; 1 some cells failed; 2 bad input (one line on stderr).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from densbench.runner.executors import RunOptions
    from densbench.runner.plan import Suite
    from densbench.runner.store import RunStore

__all__ = ["main"]


class UsageError(Exception):
    """Bad command-line input: reported as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, no usage dump
        raise UsageError(message)


def _names(text: str | None) -> list[str] | None:
    if text is None:
        return None
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise UsageError("expected a comma-separated list of names")
    return names


_DATA_ROOT_HELP = ("folder of file-based datasets (default: $DENSBENCH_DATA_ROOT, else the "
                   "checkout's datasets/)")


_MIRROR_HELP = ("fetch from this base URL instead: a file published at https://host/PATH "
                "comes from URL/PATH (default: $DENSBENCH_MIRROR)")


def _add_fetch_parser(sub: Any, run: argparse.ArgumentParser) -> None:
    """``densbench fetch``, and the options of ``densbench run`` that fetch first."""
    run.add_argument("--download", action="store_true", help="first fetch the missing "
                     "files of the suite's file-based datasets (as densbench fetch)")
    run.add_argument("--mirror", metavar="URL", help=_MIRROR_HELP)
    fe = sub.add_parser("fetch", help="download file-based datasets from their publishers "
                        "(checksums verified, a broken download resumed)")
    fe.set_defaults(handler=_cmd_fetch)
    fe.add_argument("names", nargs="+", metavar="NAME", help="datasets, e.g. mnist uci_gas")
    fe.add_argument("--mirror", metavar="URL", help=_MIRROR_HELP)
    fe.add_argument("--data-root", metavar="DIR", help=_DATA_ROOT_HELP)
    fe.add_argument("--no-progress", action="store_true", help="no progress bar")


def _build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="densbench", description="Density-estimation benchmark suite.")
    sub = p.add_subparsers(dest="command", parser_class=_Parser)
    ls = sub.add_parser("list", help="list estimators and datasets (with whether each "
                        "file-based dataset's files are present)")
    ls.set_defaults(handler=_cmd_list)
    ls.add_argument("--data-root", metavar="DIR", help=_DATA_ROOT_HELP)
    ls.add_argument("--metrics", action="store_true", help="list the metric catalogue instead")
    _add_run_parser(sub)
    rep = sub.add_parser("report", help="write a Markdown and HTML report of a run (an "
                         "invalid record is left out with a warning)")
    rep.set_defaults(handler=_cmd_report)
    rep.add_argument("run_dir", metavar="RUN")
    rep.add_argument("--format", default="md,html", metavar="md,html",
                     help="report formats (default: md,html)")
    rep.add_argument("--out", metavar="DIR", help="output folder (default: RUN)")
    cmp_ = sub.add_parser("compare", help="compare the same cells in two runs (exit 1 when "
                          "a test log-likelihood got significantly worse or a cell ok in "
                          "RUN_A is not ok or absent in RUN_B; 2 for an invalid record)")
    cmp_.set_defaults(handler=_cmd_compare)
    cmp_.add_argument("run_a", metavar="RUN_A")
    cmp_.add_argument("run_b", metavar="RUN_B")
    cmp_.add_argument("--all-metrics", action="store_true",
                      help="show every metric, not only the likelihood ones")
    _add_export_parser(sub)
    return p


def _add_run_parser(sub: Any) -> None:
    from densbench.devices import DEFAULT_DEVICE
    from densbench.runner.executors import EXECUTORS
    from densbench.runner.plan import builtin_suite_names

    r = sub.add_parser("run", help="run a suite (resumes when re-run with the same --out)")
    r.set_defaults(handler=_cmd_run)
    which = r.add_mutually_exclusive_group()
    which.add_argument("--all", action="store_true", help="the default suite")
    which.add_argument("--quick", action="store_true", help="the quick smoke suite")
    which.add_argument("--suite", metavar="FILE|NAME",
                       help="a suite TOML file, or a built-in suite ("
                            f"{', '.join(builtin_suite_names())})")
    r.add_argument("--estimators", metavar="A,B", help="only these estimators")
    r.add_argument("--datasets", metavar="X,Y", help="only these datasets")
    r.add_argument("--seeds", type=int, metavar="N", help="seeds 0..N-1")
    r.add_argument("--out", metavar="DIR", help="run folder (default results/<suite>)")
    r.add_argument("--workers", type=int, metavar="N", help="worker processes of one "
                   "thread each (default: one per usable core, fewer where memory is short)")
    r.add_argument("--executor", choices=list(EXECUTORS), default="local",
                   help="local (supervised worker processes on this machine: limits "
                        "enforced, a crashing cell fails alone), dask (distributed), or "
                        "inprocess (in this process, for a debugger: no limits, and a "
                        "crashing cell ends the run)")
    r.add_argument("--device", default=DEFAULT_DEVICE, metavar="cpu|cuda|cuda:N",
                   help="where estimators that take a device run (default cpu); with "
                        "cuda, workers take the GPUs in turn; recorded, not in cell ids")
    r.add_argument("--cell-memory-mb", type=float, metavar="MB",
                   help="stop a cell whose process uses more resident memory "
                        "(recorded as out of memory; default: the suite's, or none)")
    r.add_argument("--scheduler", metavar="ADDRESS",
                   help="Dask scheduler, e.g. tcp://host:8786 (default: a LocalCluster)")
    r.add_argument("--retry-failed", action="store_true", help="re-run failed cells too")
    r.add_argument("--compile", action="store_true",
                   help="train the neural estimators through torch.compile, the first "
                        "compiled step checked against eager PyTorch (docs/running.md)")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    r.add_argument("--data-root", metavar="DIR", help=_DATA_ROOT_HELP)
    _add_fetch_parser(sub, r)


def _add_export_parser(sub: Any) -> None:
    # The format is checked by densbench.results when the export runs, not by argparse
    # choices: importing the formats here would load numpy for every command.
    ex = sub.add_parser("export", help="write the results of one or more runs as one tidy "
                        "table (a row per cell and metric, with a run column) to a parquet "
                        "or CSV file")
    ex.set_defaults(handler=_cmd_export)
    ex.add_argument("runs", nargs="+", metavar="RUN", help="run folders")
    ex.add_argument("--out", "-o", required=True, metavar="FILE",
                    help="the file to write (replaced whole if it exists)")
    ex.add_argument("--format", metavar="parquet|csv",
                    help="default: from FILE's suffix (.parquet, .pq, .csv)")


def _marked(frame: Any) -> Any:
    """``frame`` with a ``mark`` column: worse / better (significant) or blank."""
    import numpy as np

    return frame.assign(mark=np.where(frame["worse"], "worse",
                                      np.where(frame["better"], "better", "")))


def _print_table(frame: Any) -> None:
    import pandas as pd

    with pd.option_context("display.width", 200, "display.max_rows", 500,
                           "display.float_format", "{:.4g}".format):
        print(frame.to_string(index=False))


def _counts(frame: Any) -> str:
    better, worse = int(frame["better"].sum()), int(frame["worse"].sum())
    return (f"{better} significantly better, {worse} significantly worse, "
            f"{len(frame) - better - worse} unchanged.")


def _cmd_compare(args: argparse.Namespace) -> int:
    from densbench.metrics.catalogue import TEST_LOGLIK
    from densbench.report.compare import (
        ABSENT,
        HEADLINE,
        by_estimator_dataset,
        compare_runs,
        got_worse,
        read_run,
        status_changes,
    )

    run_a, run_b = read_run(args.run_a), read_run(args.run_b)
    table = compare_runs(run_a, run_b)
    statuses = status_changes(run_a, run_b)
    shown = table if args.all_metrics else table[table["metric"].isin(HEADLINE)]
    changed = int(table.loc[table["settings_changed"], "cell_id"].nunique())
    only_a = int((statuses["status_b"] == ABSENT).sum())
    only_b = int((statuses["status_a"] == ABSENT).sum())
    print(f"{table['cell_id'].nunique()} cells ok in both runs; {only_a} only in "
          f"{args.run_a}, {only_b} only in {args.run_b}"
          + (f"; {changed} of them paired across changed settings (same estimator, "
             "dataset and seed)." if changed else "."))
    if not shown.empty:
        view = _marked(shown)
        view["mark"] += shown["settings_changed"].map({True: " (settings changed)",
                                                       False: ""})
        _print_table(view[["dataset", "estimator", "seed", "metric", "unit", "a", "b",
                           "change", "se", "mark"]])
    if not statuses.empty:
        print("cells whose status changed (a regression: ok before, not ok or absent now):")
        _print_table(_marked(statuses)[["dataset", "estimator", "seed", "status_a",
                                        "status_b", "mark", "error"]])
    print("test log-likelihood (paired over test examples, 95%): "
          + _counts(table[table["metric"] == TEST_LOGLIK]))
    summary = by_estimator_dataset(table)
    moved = summary[summary["change"] != 0]
    if not moved.empty:
        print("by estimator and dataset (mean change over seeds, nats/example, 95%):")
        # the settings only where one estimator has several entries on a dataset
        twice = moved.duplicated(["estimator", "dataset"], keep=False).any()
        _print_table(_marked(moved)[["estimator", *(["params"] if twice else []), "dataset",
                                     "seeds", "change", "se", "z", "mark"]])
    print("estimator x dataset: " + _counts(summary))
    print(f"cell status: {int(statuses['worse'].sum())} no longer ok (regressions), "
          f"{int(statuses['better'].sum())} ok again.")
    return 1 if got_worse(table, statuses) else 0


def _cmd_list(args: argparse.Namespace) -> int:
    if args.metrics:
        from densbench.metrics.catalogue import listing

        print("Metrics, by group (unit, which value is better, meaning):")
        print(listing())
        return 0
    # Declarations only: no estimator module is imported and no dataset is loaded.
    from densbench import data, estimators
    from densbench.data.root import folder_status

    print("Estimators:")
    for name in estimators.names():
        print(f"  {name:<18} {estimators.REGISTRY.describe(name)}")
    print(f"Datasets (data root: {data.data_root()}):")
    for name in data.names():
        folder = data.REGISTRY.meta(name).get("folder")
        try:
            where = folder_status(folder) if folder else "built-in"
        except OSError as exc:  # this dataset's folder, not the listing, is broken
            where = f"unreadable: {exc.strerror or exc}: {exc.filename}"
        print(f"  {name:<18} [{where}] {data.describe(name)}")
    return 0


def _byte_bars(args: argparse.Namespace) -> tuple[Any, Any]:
    """A progress callback showing a tqdm bar per downloaded file on stderr, and the
    function that closes the last bar."""
    from tqdm import tqdm

    bars: dict[str, Any] = {}

    def progress(label: str, done: int, total: int | None) -> None:
        if label not in bars:
            close()
            bars[label] = tqdm(total=total, desc=label, unit="B", unit_scale=True,
                               unit_divisor=1024, file=sys.stderr, dynamic_ncols=True,
                               disable=True if args.no_progress else None)
        bars[label].update(done - bars[label].n)

    def close() -> None:
        for bar in bars.values():
            bar.close()

    return progress, close


def _fetch_files(names: list[str], args: argparse.Namespace, explicit: bool = False) -> int:
    """Download the missing files of datasets ``names``; with ``explicit`` (densbench
    fetch) a dataset with no files is named, and an unknown one is an error."""
    from densbench import data
    from densbench.data.fetch import fetch
    from densbench.data.sources import SOURCES

    known = data.names()
    folders = {n: data.REGISTRY.meta(n).get("folder") for n in known}
    unknown = [n for n in names if n not in folders]
    if explicit and unknown:
        raise UsageError(f"unknown dataset {unknown[0]!r}; datasets with files to fetch: "
                         f"{', '.join(n for n in known if folders[n])}")
    for name in names:
        if explicit and name in folders and not folders[name]:
            print(f"{name}: needs no download (generated, or shipped with a package)")
    sources = [SOURCES[folders[n]] for n in names if folders.get(n)]
    progress, close = _byte_bars(args)
    try:
        fetched = fetch(sources, mirror=args.mirror, progress=progress)
    finally:
        close()
    for item in fetched:
        if explicit or item.action != "present":
            print(f"{item.path}: {item.action}; {item.verified}")
    if explicit and fetched:
        counts = {a: sum(f.action == a for f in fetched)
                  for a in ("downloaded", "extracted", "present")}
        print(f"{len(fetched)} files under {data.data_root()}: " + ", ".join(
            f"{n} {'already present' if a == 'present' else a}" for a, n in counts.items()))
    return 0


def _run_options(args: argparse.Namespace) -> RunOptions:
    """The run settings of ``densbench run``, checked (a UsageError names the bad one)."""
    from densbench.parallel import default_workers
    from densbench.runner.executors import RunOptions
    from densbench.runner.supervise import local_devices

    if args.workers is not None and args.workers < 1:
        raise UsageError(f"--workers must be >= 1; got {args.workers}")
    if args.scheduler and args.executor != "dask":
        raise UsageError("--scheduler needs --executor dask")
    if args.executor == "inprocess" and args.workers not in (None, 1):
        raise UsageError("--executor inprocess runs one cell at a time: no --workers")
    workers = args.workers or (1 if args.executor == "inprocess" else default_workers())
    options = RunOptions(workers=workers, device=args.device, scheduler=args.scheduler,
                         executor=args.executor, retry_failed=args.retry_failed,
                         compile=args.compile)
    if args.executor != "dask":  # a Dask cluster's GPUs are its workers' to count
        local_devices(args.device, workers)
    return options


def _chosen_suite(args: argparse.Namespace) -> Suite:
    """The suite named by --suite, --quick or --all/--estimators/--datasets."""
    from densbench.runner.plan import builtin_suite, load_suite

    if args.suite:
        is_file = Path(args.suite).exists() or args.suite.endswith(".toml")
        return load_suite(args.suite) if is_file else builtin_suite(args.suite)
    if args.quick:
        return builtin_suite("quick")
    if args.all or args.estimators or args.datasets:
        return builtin_suite("default")
    raise UsageError("choose what to run: --all, --quick, --suite FILE, or "
                     "--estimators/--datasets")


def _narrowed_suite(suite: Suite, args: argparse.Namespace) -> Suite:
    """``suite`` cut to the chosen estimators, datasets and seeds, with its data files
    checked and --cell-memory-mb applied."""
    import dataclasses

    from densbench.data import require_files

    if args.cell_memory_mb is not None and not args.cell_memory_mb > 0:
        raise UsageError(f"--cell-memory-mb must be > 0; got {args.cell_memory_mb:g}")
    suite = suite.restrict(estimators=_names(args.estimators), datasets=_names(args.datasets),
                           n_seeds=args.seeds)
    names = sorted({d.name for d in suite.datasets})
    if args.download:
        _fetch_files(names, args)
    for name in names:
        require_files(name)  # a missing or wrong data file: one line, exit 2
    if args.cell_memory_mb is not None:
        suite = dataclasses.replace(suite, cell_memory_mb=args.cell_memory_mb)
    return suite


def _output_folder(args: argparse.Namespace, suite_name: str) -> Path:
    """--out, else results/<suite> (its parent made here)."""
    if args.out:
        return Path(args.out)
    out = Path("results") / suite_name
    out.parent.mkdir(parents=True, exist_ok=True)
    return out


def _progress_bar(args: argparse.Namespace, suite_name: str, n_cells: int) -> Any:
    """A tqdm bar on stderr, or None with --no-progress."""
    if args.no_progress:
        return None
    from tqdm import tqdm

    return tqdm(total=n_cells, desc=f"densbench {suite_name}", unit="cell",
                file=sys.stderr, dynamic_ncols=True, disable=None)


def _run_with_bar(suite: Suite, store: RunStore, options: RunOptions, argv: list[str],
                  bar: Any) -> Any:
    """Run ``suite`` into ``store``, showing cells and neural epochs on ``bar`` (if any);
    the bar is closed however the run ends."""
    from densbench.estimators.training import progress_callback
    from densbench.metrics.timing import steady_allocator
    from densbench.runner.execute import run_suite

    def progress(ev):
        if bar is not None:
            bar.n = ev.done
            bar.set_postfix_str(f"{ev.cell.label}: {ev.status}", refresh=False)
            bar.refresh()

    def epoch(ev):  # neural estimators report each epoch (from every local worker)
        if bar is not None:
            bar.set_postfix_str(f"{ev['who']}: epoch {ev['epoch']}/{ev['max_epochs']}, "
                                f"val {ev['val_loglik']:.3f}")

    steady_allocator()  # this process computes floors (and runs cells with inprocess)
    try:
        with progress_callback(epoch):
            return run_suite(suite, store, options,
                             command="densbench " + " ".join(argv), on_progress=progress)
    finally:
        if bar is not None:
            bar.close()


def _run_outcome(out: Path, summary: Any) -> int:
    """Print the run's warnings and summary; its exit code (130 interrupted, 1 a cell
    failed, else 0)."""
    for path, why in summary.moved_aside:
        print(f"densbench: warning: {why}; moved aside to {path}, its cell was run again",
              file=sys.stderr)
    _print_summary(out, summary)
    if summary.interrupted:
        print("densbench: interrupted; every finished cell is saved: re-run the same "
              "command to resume", file=sys.stderr)
        return 130
    return 1 if summary.n_failed else 0


def _cmd_run(args: argparse.Namespace) -> int:
    from densbench.runner.store import RunStore

    suite = _chosen_suite(args)
    options = _run_options(args)
    suite = _narrowed_suite(suite, args)
    n_cells = len(suite.cells())
    out = _output_folder(args, suite.name)
    store = RunStore(out, create=True)
    bar = _progress_bar(args, suite.name, n_cells)
    summary = _run_with_bar(suite, store, options, args.argv, bar)
    return _run_outcome(out, summary)


def _print_summary(out: Path, summary) -> None:
    import pandas as pd

    from densbench.report.tables import summary_table
    from densbench.runner.store import load

    table = summary_table(load(out))
    if not table.empty:
        with pd.option_context("display.width", 200, "display.max_columns", 50,
                               "display.float_format", "{:.3f}".format):
            print("Mean test log-likelihood [nats/example] over seeds:")
            print(table.to_string())
    this_time = len(summary.failed)
    print(f"{summary.total} cells: {summary.ok + this_time} ran ({summary.ok} ok, "
          f"{this_time} failed), {summary.skipped} already done"
          + (f" ({len(summary.earlier_failed)} of them failed)" if summary.earlier_failed
             else "") + f"; {summary.n_failed} failed in all. Results: {out}")
    for rec in summary.earlier_failed + summary.failed:
        print(f"  {rec['status']}: {rec['estimator']['name']} / {rec['dataset']['name']} / "
              f"seed {rec['seed']}: {rec['error']}")
    if summary.n_failed:
        print("Re-run the same command with --retry-failed to run the failed cells again.")


def _cmd_report(args: argparse.Namespace) -> int:
    import warnings

    from densbench.report.render import InvalidRecordWarning, write_report
    from densbench.runner.store import RunStore

    RunStore(args.run_dir)  # a clear error for a folder that is not a run
    if args.out and not Path(args.out).is_dir():
        raise UsageError(f"--out must be an existing folder; got {args.out}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", InvalidRecordWarning)
        paths = write_report(args.run_dir, tuple(_names(args.format)), args.out)
    for w in caught:  # a record left out: one line each, the report says which too
        if issubclass(w.category, InvalidRecordWarning):
            print(f"densbench: warning: {w.message}", file=sys.stderr)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    for path in paths:
        print(f"wrote {path}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from densbench.results import export

    table = export(args.runs, args.out, args.format)
    cells = table.drop_duplicates(["run", "cell_id"])
    not_ok = int((cells["status"] != "ok").sum())
    runs = len(args.runs)
    print(f"wrote {len(table)} rows ({runs} run{'s' * (runs != 1)}, {len(cells)} cells"
          + (f"; {not_ok} not ok, one row each with status and error, no value"
             if not_ok else "") + f") to {args.out}")
    return 0


def _cmd_fetch(args: argparse.Namespace) -> int:
    return _fetch_files(args.names, args, explicit=True)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _build_parser()
    try:
        args = parser.parse_args(argv)
        if getattr(args, "data_root", None):
            from densbench.data.root import set_data_root

            set_data_root(args.data_root)  # also seen by worker processes
        if hasattr(args, "handler"):
            args.argv = argv  # recorded by a run as the command that made it
            return args.handler(args)
        parser.print_help()
        return 2
    except BrokenPipeError:
        # The reader has gone (``densbench list | head``): nothing to report. Output still
        # buffered goes to /dev/null so that the interpreter's last flush fails no more.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    except (UsageError, ValueError, OSError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"densbench: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("densbench: interrupted; re-run the same command to resume", file=sys.stderr)
        return 130


def console_main() -> NoReturn:
    """The ``densbench`` command: :func:`main`, and the exit without the interpreter's last
    garbage collection (:func:`~densbench.runner.processes.skip_exit_collection`), whose
    second or so would otherwise end every command that imported PyTorch."""
    from densbench.runner.processes import skip_exit_collection

    try:
        code = main()
    finally:  # also on argparse's own exit (--help)
        skip_exit_collection()
    sys.exit(code)


if __name__ == "__main__":
    console_main()
