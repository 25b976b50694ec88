"""Suites (TOML) and the cells they expand into.

A suite file::

    name = "quick"
    seeds = [0]                      # or an int N meaning seeds 0..N-1
    [budget]
    cell_timeout_s = 120             # a cell using more CPU seconds per thread is stopped:
                                     # "timeout" (start-up not counted; runner/supervise.py)
    cell_wall_timeout_s = 1200       # the wall-clock backstop (default 10 x cell_timeout_s)
    cell_memory_mb = 4000            # a cell's process using more is stopped: "out of memory"
    [samples]
    n = 1000                         # samples per cell (default: validation-set size;
                                     # 0: draw none, e.g. where sampling is sequential)
    metrics = true                   # compute sample metrics beside their floor

    [[datasets]]
    name = "eight_gaussians"
    [datasets.params]                # optional loader parameters
    n_train = 2000

    [[estimators]]
    name = "kde"
    datasets = ["eight_gaussians"]   # optional: only on these datasets
    [estimators.params]              # optional hyperparameters
    bandwidth = "cv"

    [[estimators]]
    name = "maf"
    [estimators.params]
    max_epochs = 40
    [estimators.tune]                # optional: candidates, chosen per dataset and seed
    hidden = [[32, 32], [64, 64]]    # on the validation split (runner/tuning.py)
    lr = { log_uniform = [1e-4, 1e-2] }
    [estimators.search]              # a random search: the budget and its seed
    n_trials = 6                     # (absent: every combination of the lists, a grid)
    seed = 0

expands into one :class:`Cell` per estimator x dataset x seed.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import re
import tomllib
from dataclasses import asdict, dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from densbench.registry import PluginError, UnknownNameError, absolute_spec

if TYPE_CHECKING:  # imported where used, as the registries are: importing the planner stays light
    from densbench.estimators.selection import SearchSpace

__all__ = ["Cell", "Spec", "Suite", "SuiteError", "builtin_suite", "builtin_suite_names",
           "canonical", "load_suite", "runs_user_code"]


class SuiteError(ValueError):
    """A malformed or inconsistent suite."""


def canonical(obj: Any) -> str:
    """The JSON text that cell ids and floor keys hash (sorted keys, no spaces)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def _absolute(name: str) -> str:
    from densbench.data import SUFFIXES

    return absolute_spec(name, SUFFIXES)


@dataclass(frozen=True)
class Spec:
    """A registry name with its keyword parameters."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)
    #: for an estimator: run it only on these datasets (None: on all of the suite's)
    only: tuple[str, ...] | None = field(default=None, compare=False)
    #: for an estimator: candidate values chosen per cell on the validation split
    tune: SearchSpace | None = None
    #: where the entry comes from, as errors name it (a suite file's key, or the
    #: command-line option and the name as typed)
    origin: str | None = field(default=None, compare=False)
    #: why its cells are not run (its check ran past a cell's limits; see
    #: :mod:`densbench.runner.isolate`): they are recorded as timeouts with this error
    refused: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        # a file named relative to the planner's directory is found by every worker
        object.__setattr__(self, "name", _absolute(self.name))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "params": dict(self.params)}
        if self.tune is not None:  # no key when untuned: its id is the plain spec's
            out["tune"] = self.tune.to_dict()
        return out


@dataclass(frozen=True)
class Cell:
    """One unit of work: an estimator on a dataset with one seed."""

    estimator: Spec
    dataset: Spec
    seed: int
    timeout_s: float | None = None
    #: samples drawn for the sample metrics (None: as many as validation rows, so that the
    #: floor, validation vs test, is at the same sample size)
    n_samples: int | None = None
    sample_metrics: bool = True
    #: resident memory (MB) above which the cell's process is stopped: "out of memory"
    memory_mb: float | None = None
    #: wall-clock seconds after which the cell is stopped whatever its CPU time (None:
    #: 10 x ``timeout_s``, the CPU budget; :mod:`densbench.runner.supervise`)
    wall_timeout_s: float | None = None

    def __post_init__(self) -> None:
        _refuse_run_settings(self.estimator)

    @property
    def id(self) -> str:
        """Stable hash of (estimator + params, dataset + params, seed[, n_samples])."""
        key = {"estimator": self.estimator.to_dict(), "dataset": self.dataset.to_dict(),
               "seed": self.seed}
        if self.content is not None:  # a user's data file: its content, not just its path
            key["dataset_sha256"] = self.content
        if self.n_samples is not None:
            key["n_samples"] = self.n_samples
        return hashlib.sha256(canonical(key).encode()).hexdigest()[:16]

    @property
    def content(self) -> str | None:
        """SHA-256 of the content of a file dataset (``None`` for the others)."""
        from densbench.data import fingerprint

        return fingerprint(self.dataset.name, self.dataset.params)

    @property
    def label(self) -> str:
        return f"{self.estimator.name} / {self.dataset.name} / seed {self.seed}"

    def to_dict(self) -> dict[str, Any]:
        dataset = self.dataset.to_dict()
        if self.content is not None:
            dataset["sha256"] = self.content
        return {"id": self.id, "estimator": self.estimator.to_dict(),
                "dataset": dataset, "seed": self.seed,
                "timeout_s": self.timeout_s, "wall_timeout_s": self.wall_timeout_s,
                "memory_mb": self.memory_mb,
                "n_samples": self.n_samples, "sample_metrics": self.sample_metrics}


@dataclass(frozen=True)
class Suite:
    """Estimators x datasets x seeds, with a per-cell time budget."""

    name: str
    estimators: tuple[Spec, ...]
    datasets: tuple[Spec, ...]
    seeds: tuple[int, ...]
    cell_timeout_s: float | None = None
    source: str = ""
    n_samples: int | None = None
    sample_metrics: bool = True
    cell_memory_mb: float | None = None
    cell_wall_timeout_s: float | None = None
    #: the suite as written, where this one is it restricted (:meth:`restrict`)
    restricted_from: Suite | None = field(default=None, compare=False, repr=False)

    def cells(self) -> list[Cell]:
        return [Cell(e, d, s, self.cell_timeout_s, self.n_samples, self.sample_metrics,
                     self.cell_memory_mb, self.cell_wall_timeout_s)
                for d in self.datasets for e in self.estimators for s in self.seeds
                if e.only is None or d.name in e.only]

    def restrict(self, *, estimators: list[str] | None = None,
                 datasets: list[str] | None = None, n_seeds: int | None = None) -> Suite:
        """This suite narrowed (or widened) to the given names; a name the suite does not
        list is taken with its default parameters.

        An estimator named here that ends up with no cell (its ``datasets`` restriction
        leaves none of the chosen datasets) is an error; one the suite brought along
        without being named is dropped, and so is an entry of a named estimator whose
        other entries have cells (per-dataset settings, as the default suite gives).
        """
        out = replace(self, restricted_from=self.restricted_from or self)
        where = f"{self.source or self.name} as restricted by the command line"
        if estimators is not None:
            out = replace(out, estimators=_pick(out.estimators, estimators, "--estimators"))
        if datasets is not None:
            out = replace(out, datasets=_pick(out.datasets, datasets, "--datasets"))
            names = {d.name for d in out.datasets}
            runs = [e.only is None or bool(names & set(e.only)) for e in out.estimators]
            running = {e.name for e, r in zip(out.estimators, runs, strict=True) if r}
            out = replace(out, estimators=tuple(
                e for e, r in zip(out.estimators, runs, strict=True)
                if r or (estimators is not None and e.name not in running)))
        if n_seeds is not None:
            if n_seeds < 1:
                raise SuiteError(f"--seeds must be >= 1; got {n_seeds}")
            out = replace(out, seeds=tuple(range(n_seeds)))
        return out.validate(where)

    def validate(self, where: str | None = None) -> Suite:
        """Check the whole suite before anything runs: every name against its registry,
        every estimator's hyperparameters by the estimator's own checks
        (:meth:`~densbench.estimators.base.DensityEstimator.check_params`), every
        dataset's parameters by its loader, each estimator's ``datasets`` restriction, no
        repeated entry, a name usable as a folder under ``results/``. Raises
        :class:`SuiteError` naming the entry as the user gave it (the suite file and key,
        or the command-line option and name).

        The checks of an estimator or dataset from outside the package run its code: they
        run in a child process under a cell's limits (:mod:`densbench.runner.isolate`).
        Returns the suite to run: an entry whose check ran past those limits is marked
        ``refused``, so that its cells are recorded as timeouts without running while the
        others run."""
        where = where or self.source or f"suite {self.name}"
        _check_name(self.name, where)
        if not self.seeds:
            raise SuiteError(f"{where}: no seeds")
        for key, specs in (("estimators", self.estimators), ("datasets", self.datasets)):
            _check_unique(specs, key, where)
        limits = (self.cell_timeout_s, self.cell_wall_timeout_s)
        checked = [_checked_dataset(spec, _at(spec, "datasets", i, where), limits)
                   for i, spec in enumerate(self.datasets)]
        chosen = {d.name for d in self.datasets}
        estimators = []
        for i, spec in enumerate(self.estimators):
            at = _at(spec, "estimators", i, where)
            if spec.only is not None:
                _check_restriction(spec.only, chosen, at)
            infos = [info for d, info in checked if info is not None
                     and (spec.only is None or d.name in spec.only)]
            estimators.append(_checked_estimator(spec, infos, at, limits))
        return replace(self, estimators=tuple(estimators),
                       datasets=tuple(d for d, _ in checked))


#: What a suite name may be: it names the run's folder, ``results/<name>``.
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


def _check_name(name: str, where: str) -> None:
    if not _NAME.fullmatch(name) or ".." in name:
        raise SuiteError(f"{where}: name {name!r} must be a plain folder name (letters, "
                         f"digits, '_', '-', '.'; no '..'): the run is written to "
                         f"results/<name>")


def _check_unique(specs: tuple[Spec, ...], key: str, where: str) -> None:
    """Two entries with the same name and params repeat each other where they would run on
    a common dataset (an entry restricted to other datasets is a distinct set of cells)."""
    seen: dict[tuple[str, str], list[tuple[int, Spec]]] = {}
    for i, spec in enumerate(specs):
        ident = (spec.name, canonical(spec.to_dict()))
        for j, other in seen.get(ident, []):
            if (spec.only is None or other.only is None
                    or set(spec.only) & set(other.only)):
                raise SuiteError(f"{_at(spec, key, i, where)} repeats {key}[{j}] with the "
                                 f"same params; each cell would run twice")
        seen.setdefault(ident, []).append((i, spec))


def _at(spec: Spec, key: str, i: int, where: str) -> str:
    """How errors name entry ``i`` of ``key``: where it comes from, else by its place."""
    return spec.origin or f"{where}: {key}[{i}] ({spec.name})"


def _refuse_run_settings(spec: Spec) -> None:
    for key in sorted(spec.params.keys() & {"device", "compile"}):
        raise SuiteError(f"estimator {spec.name}: {key!r} is a setting of the run "
                         f"(densbench run --{key}), not a hyperparameter: a cell's id and "
                         "results do not depend on how it ran")


def _check_estimator(spec: Spec, info: Any, at: str) -> None:
    """The estimator's own checks of its params as a cell on dataset ``info`` would give
    them: with what it takes from the data (the number of levels, a sequence shape)."""
    from densbench import estimators
    from densbench.devices import DEFAULT_DEVICE

    try:
        _refuse_run_settings(spec)
        cls = estimators.get(spec.name)
        cls.check_param_names(spec.params)
        base = {**cls.run_params(info, seed=0, device=DEFAULT_DEVICE), **spec.params}
        cls.check_params(base)
        if spec.tune is not None:
            _check_tuning(cls, spec, base)
    except UnknownNameError as exc:
        raise UnknownNameError(f"{at}: {exc}") from None
    except PluginError as exc:
        raise SuiteError(f"{at}: {exc}") from None
    except ValueError as exc:
        raise SuiteError(f"{at} params: {exc}") from None


def _check_tuning(cls: Any, spec: Spec, base: dict[str, Any]) -> None:
    """Every candidate setting of ``spec.tune`` by the estimator's own checks, as the cell
    would fit it (so a bad candidate fails the suite, not the 7th trial of a cell)."""
    assert spec.tune is not None
    names = set(spec.tune.space)
    cls.check_param_names(dict.fromkeys(names))
    given = sorted(names & set(spec.params))
    if given:
        raise ValueError(f"{cls.name}: {', '.join(given)} given both as params and as tune "
                         "candidates; give each hyperparameter in one place")
    if "device" in names or "random_state" in names:
        raise ValueError(f"{cls.name}: device and random_state are settings of the run, not "
                         "candidates to tune")
    for i, trial in enumerate(spec.tune.trials()):
        try:
            cls.check_params({**base, **trial})
        except ValueError as exc:
            raise ValueError(f"tune candidate {i} {trial}: {exc}") from None


#: The declared shape and kind of each dataset spec checked so far (by canonical spec).
_DATASET_INFO: dict[str, Any] = {}


def _check_dataset(spec: Spec, at: str) -> Any:
    """The loader's own checks, once per name and params (seed 0); returns the dataset's
    :class:`~densbench.data.base.DatasetInfo`."""
    from densbench import data

    key = canonical(spec.to_dict())
    if key in _DATASET_INFO:
        return _DATASET_INFO[key]
    try:
        loader = data.REGISTRY.get(spec.name)
    except UnknownNameError as exc:
        raise UnknownNameError(f"{at}: {exc}") from None
    except ValueError as exc:  # a plugin that does not load, a data file that is not
        raise SuiteError(f"{at}: {exc}") from None
    known = set(inspect.signature(loader).parameters) - {"seed"}
    unknown = sorted(set(spec.params) - known)
    if unknown:
        raise SuiteError(f"{at}: unknown parameter(s) {', '.join(unknown)}; known: "
                         f"{', '.join(sorted(known))}")
    try:  # file datasets answer from their declaration: validating reads no file
        info = data.info(spec.name, seed=0, **spec.params)
    except ValueError as exc:
        raise SuiteError(f"{at} params: {exc}") from None
    _DATASET_INFO[key] = info
    return info


# -- checks that run a user's code: in a child process (densbench.runner.isolate) --------

#: What the isolated checks answered so far (a suite is checked again when restricted).
_ISOLATED: dict[str, Any] = {}


def runs_user_code(spec: Spec, registry: Any) -> bool:
    """Whether checking ``spec`` imports or calls code from outside the package: an
    installed plugin or a spec, or a data file with a ``log_prob`` function."""
    from densbench.data import is_data_file
    from densbench.registry import is_spec

    if registry.is_builtin(spec.name):
        return False
    return (spec.name in registry or is_spec(spec.name)
            or (is_data_file(spec.name) and "log_prob" in spec.params))


def _isolated(kind: str, spec: Spec, target: str, infos: list[Any] | None, at: str,
              limits: tuple[float | None, float | None]) -> tuple[Any, str | None]:
    """``target(spec[, infos], at)`` in a child process under a cell's ``limits``: (its
    answer, None), or (None, why the cells are not run) when it ran past them. Its errors
    are raised as the suite's (one line, naming ``at``)."""
    from densbench.runner.isolate import CheckError, Limits, OutOfLimits, call

    args = (spec, at) if infos is None else (spec, infos, at)
    key = canonical([target, spec.to_dict(), infos, limits])  # where it was named aside
    if key not in _ISOLATED:
        try:
            _ISOLATED[key] = (call(target, args, Limits.of_cells(*limits),
                                   errors=(SuiteError, UnknownNameError)), None)
        except OutOfLimits as exc:
            _ISOLATED[key] = (None, f"{kind} {spec.name} was not run: importing and "
                                    f"checking it (in a separate process, before the run) "
                                    f"took {exc}")
        except CheckError as exc:
            raise SuiteError(f"{at}: checking it failed: {exc}") from None
    return _ISOLATED[key]


def _checked_dataset(spec: Spec, at: str, limits: tuple[float | None, float | None]
                     ) -> tuple[Spec, Any]:
    """``spec`` (marked refused if its check ran past the limits) and its dataset info
    (None if refused)."""
    from densbench import data

    if not runs_user_code(spec, data.REGISTRY):
        return spec, _check_dataset(spec, at)
    fields, refused = _isolated("dataset", spec, "densbench.runner.plan:_dataset_fields",
                                None, at, limits)
    if refused is not None:
        return replace(spec, refused=refused), None
    from densbench.data.base import DatasetInfo

    shapes = ("image_shape", "sequence_shape")
    return spec, DatasetInfo(**{**fields, **{k: None if fields[k] is None else
                                             tuple(fields[k]) for k in shapes}})


def _dataset_fields(spec: Spec, at: str) -> dict[str, Any]:
    """:func:`_check_dataset`'s info as plain fields (run in the child process)."""
    return asdict(_check_dataset(spec, at))


def _checked_estimator(spec: Spec, infos: list[Any], at: str,
                       limits: tuple[float | None, float | None]) -> Spec:
    """``spec``, checked on each dataset info (marked refused if its check ran past the
    limits)."""
    from densbench import estimators

    if not runs_user_code(spec, estimators.REGISTRY):
        _check_estimator_on(spec, infos, at)
        return spec
    _, refused = _isolated("estimator", spec, "densbench.runner.plan:_check_estimator_on",
                           infos, at, limits)
    return spec if refused is None else replace(spec, refused=refused)


def _check_estimator_on(spec: Spec, infos: list[Any], at: str) -> None:
    for info in infos:
        _check_estimator(spec, info, at)


def _check_restriction(only: tuple[str, ...], chosen: set[str], at: str) -> None:
    from densbench import data

    known = set(data.names())
    unknown = [n for n in only if n not in known]
    if unknown:
        raise SuiteError(f"{at}: datasets names unknown dataset(s) {', '.join(unknown)}; "
                         f"known: {', '.join(sorted(known))}")
    if not chosen & set(only):
        raise SuiteError(f"{at}: runs only on {', '.join(only)}, none of which is among "
                         f"the datasets of this run ({', '.join(sorted(chosen))}): it would "
                         f"have no cell")


def _pick(specs: tuple[Spec, ...], names: list[str], option: str) -> tuple[Spec, ...]:
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise SuiteError(f"{option} names {', '.join(twice)} more than once")
    by_name: dict[str, list[Spec]] = {}
    for s in specs:
        by_name.setdefault(s.name, []).append(s)
    out: list[Spec] = []
    for n in names:
        typed = f"{option} {n}"
        out.extend([replace(s, origin=f"{typed} (as {s.origin} sets it)" if s.origin
                            else typed) for s in by_name.get(_absolute(n), [])]
                   or [Spec(n, origin=typed)])
    return tuple(out)


def _specs(raw: Any, key: str, where: str) -> tuple[Spec, ...]:
    if not isinstance(raw, list) or not raw:
        raise SuiteError(f"{where}: '{key}' must be a non-empty array of tables "
                         f"([[{key}]] with a name)")
    specs = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise SuiteError(f"{where}: {key}[{i}] needs a string 'name'")
        allowed = {"name", "params", "datasets"} | (
            {"tune", "search"} if key == "estimators" else set())
        extra = sorted(set(item) - allowed)
        if extra:
            raise SuiteError(f"{where}: {key}[{i}] ({item['name']}) has unknown key(s) "
                             f"{', '.join(extra)}; put hyperparameters under 'params'")
        params = item.get("params", {})
        if not isinstance(params, dict):
            raise SuiteError(f"{where}: {key}[{i}] ({item['name']}): params must be a table")
        only = item.get("datasets")
        if only is not None and (key != "estimators" or not isinstance(only, list)
                                 or not all(isinstance(x, str) for x in only)):
            raise SuiteError(f"{where}: {key}[{i}] ({item['name']}): 'datasets' (only for "
                             "estimators) must be a list of dataset names")
        at = f"{where}: {key}[{i}] ({item['name']})"
        specs.append(Spec(item["name"], dict(params), None if only is None else tuple(only),
                          _tuning(item, at), origin=at))
    return tuple(specs)


def _tuning(item: dict[str, Any], at: str) -> SearchSpace | None:
    """The ``tune`` and ``search`` tables of an estimator entry (None if it has neither)."""
    from densbench.estimators.selection import SearchSpace

    tune, how = item.get("tune"), item.get("search")
    if tune is None:
        if how is not None:
            raise SuiteError(f"{at}: 'search' without 'tune' (the candidates to search)")
        return None
    if not isinstance(tune, dict) or (how is not None and not isinstance(how, dict)):
        raise SuiteError(f"{at}: 'tune' and 'search' must be tables")
    how = how or {}
    extra = sorted(set(how) - {"n_trials", "seed"})
    if extra:
        raise SuiteError(f"{at}: search has unknown key(s) {', '.join(extra)}; known: "
                         "n_trials, seed")
    try:
        return SearchSpace.parse(tune, n_trials=how.get("n_trials"), seed=how.get("seed", 0),
                                 who=str(item["name"]))
    except ValueError as exc:
        raise SuiteError(f"{at}: {exc}") from None


def parse_suite(text: str, where: str) -> Suite:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SuiteError(f"{where}: not valid TOML ({exc})") from None
    extra = sorted(set(raw) - {"name", "seeds", "budget", "estimators", "datasets",
                               "description", "samples"})
    if extra:
        raise SuiteError(f"{where}: unknown key(s) {', '.join(extra)}")
    seeds = raw.get("seeds", [0])
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        if seeds < 1:
            raise SuiteError(f"{where}: seeds must be >= 1; got {seeds}")
        seeds = list(range(seeds))
    if not isinstance(seeds, list) or not seeds or not all(
            isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds):
        raise SuiteError(f"{where}: seeds must be a positive int or a list of ints >= 0")
    budget = raw.get("budget", {})
    budget_keys = ("cell_timeout_s", "cell_wall_timeout_s", "cell_memory_mb")
    if not isinstance(budget, dict) or sorted(set(budget) - set(budget_keys)):
        raise SuiteError(f"{where}: [budget] takes only {', '.join(budget_keys)}")
    timeout, wall, memory = (budget.get(key) for key in budget_keys)
    for key, value in zip(budget_keys, (timeout, wall, memory), strict=True):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)
                                  or value <= 0):
            raise SuiteError(f"{where}: {key} must be a number > 0; got {value!r}")
    samples = raw.get("samples", {})
    if not isinstance(samples, dict) or sorted(set(samples) - {"n", "metrics"}):
        raise SuiteError(f"{where}: [samples] takes only n and metrics")
    n_samples = samples.get("n")
    if n_samples is not None and (isinstance(n_samples, bool) or not isinstance(n_samples, int)
                                  or n_samples < 0 or n_samples == 1):
        raise SuiteError(f"{where}: [samples] n must be 0 (draw none) or an int >= 2; "
                         f"got {n_samples!r}")
    use_metrics = samples.get("metrics", True)
    if not isinstance(use_metrics, bool):
        raise SuiteError(f"{where}: [samples] metrics must be true or false")
    name = raw.get("name", Path(where).stem)
    if not isinstance(name, str) or not name:
        raise SuiteError(f"{where}: name must be a non-empty string")
    suite = Suite(name=name,
                  estimators=_specs(raw.get("estimators"), "estimators", where),
                  datasets=_specs(raw.get("datasets"), "datasets", where),
                  seeds=tuple(seeds), cell_timeout_s=timeout, source=where,
                  n_samples=n_samples, sample_metrics=use_metrics, cell_memory_mb=memory,
                  cell_wall_timeout_s=wall)
    return suite.validate()


def load_suite(path: str | Path) -> Suite:
    """Read and validate a suite file."""
    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise SuiteError(f"suite file not found: {p}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SuiteError(f"cannot read suite file {p}: {exc}") from None
    return parse_suite(text, str(p))


def builtin_suite_names() -> list[str]:
    """The suites shipped in ``densbench/suites``, one TOML file each."""
    return sorted(f.name.removesuffix(".toml") for f in
                  resources.files("densbench.suites").iterdir() if f.name.endswith(".toml"))


def builtin_suite(name: str) -> Suite:
    """A suite shipped in ``densbench/suites`` (see :func:`builtin_suite_names`).

    Example:
        >>> s = builtin_suite("quick")
        >>> s.name, len(s.cells()) > 0
        ('quick', True)
    """
    res = resources.files("densbench.suites").joinpath(f"{name}.toml")
    if not res.is_file():
        raise SuiteError(f"no built-in suite {name!r}; known: "
                         f"{', '.join(builtin_suite_names())}")
    return parse_suite(res.read_text(), f"densbench/suites/{name}.toml")
