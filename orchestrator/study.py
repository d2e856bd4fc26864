"""The library's front door: ``Study`` runs an experiment file's grid, ``StudyResult`` is what it leaves.

    from orchestrator import Study
    study = Study.from_file("experiments/quickstart.yaml")
    study.plan()                 # the trials and their Ray bundles; starts nothing
    result = study.run()         # embedded local Ray, or the cluster of ``address``
    result.dataframe(); result.best("f1_macro"); result.report_url

``Study.resume(run_id, store=...)`` continues an interrupted run; completed trials are kept, not re-run.
The command line (``orchestrator.cli``) is a thin layer over this module.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from orchestrator.errors import BadInput, StudyError
from orchestrator.results import StudyResult

if TYPE_CHECKING:
    from orchestrator.execution.engine import Trainable
    from orchestrator.spec.schema import ExperimentSpec
    from workers.config import TrialConfig

HUGE_GRID = 500  # grids larger than this need an explicit confirmation on the command line


@dataclass(frozen=True)
class PlannedTrial:
    """One trial of a plan and the Ray bundle it will request."""

    trial: "TrialConfig"
    bundle: dict[str, float]


@dataclass(frozen=True)
class StudyPlan:
    """What ``Study.run`` would do, computed without starting anything."""

    experiment: str
    trials: list[PlannedTrial]
    estimate: dict | None = None  # wall time and cost per node type and in total (orchestrator.execution.plan)

    def __len__(self) -> int:
        return len(self.trials)

    def to_dict(self) -> dict:
        """The plan as plain data (``submit --dry-run --json``): every trial with its bundle, and the estimate."""
        return {"experiment": self.experiment, "n_trials": len(self.trials),
                "trials": [{"trial_id": p.trial.trial_id, "architecture": p.trial.architecture,
                            "epochs": p.trial.epochs, "node_type": p.trial.node_type,
                            "augmentation": p.trial.augmentation, "framework": p.trial.framework,
                            "repeat": p.trial.repeat, "resources": dict(p.bundle)} for p in self.trials],
                "estimate": self.estimate}

    def check_budget(self, budget_usd: float | None, field: str = "execution.budget_usd") -> None:
        """``OverBudget`` (one line) when the estimated cost exceeds ``budget_usd`` or cannot be estimated."""
        from orchestrator.errors import OverBudget
        from orchestrator.execution.plan import budget_refusal

        refusal = budget_refusal(self.estimate, budget_usd, field) if self.estimate else None
        if refusal:
            raise OverBudget(refusal)


class Study:
    """A study of an experiment spec: plan it, run it, resume it."""

    def __init__(self, spec: "ExperimentSpec", *, file: str | Path | None = None, run_id: str | None = None,
                 address: str | None = None, cluster_config: dict | str | None = None,
                 trainable: "Trainable | None" = None, num_cpus: int | None = None):
        if run_id:
            from orchestrator.runs import check_run_name

            check_run_name(run_id, "--run-id")
        self.spec, self.file, self.run_id = spec, Path(file) if file else None, run_id
        self.address, self.trainable, self.num_cpus = address, trainable, num_cpus
        self.cluster_config = _load_cluster_config(cluster_config)

    @classmethod
    def from_file(cls, path: str | Path, *, store: str | None = None, **kwargs: Any) -> "Study":
        """A study of an experiment file; ``store`` overrides its ``storage.uri``."""
        from orchestrator.spec.schema import load_spec

        return cls(with_store(load_spec(path), store), file=path, **kwargs)

    @classmethod
    def resume(cls, run: str, *, store: str = "results", endpoint_url: str | None = None, **kwargs: Any) -> "Study":
        """The study of a stored run (``run_id`` or ``experiment/run_id``), to be continued with ``run()``."""
        from orchestrator.run_store import scan_trial_records
        from orchestrator.runs import check_stored_run, find_run, open_runs_store, read_run_spec

        opened = open_runs_store(store, endpoint_url)
        paths = find_run(opened, run)
        check_stored_run(opened, paths, records=True)
        spec = read_run_spec(opened, paths)
        storage = spec.storage.model_copy(update={"uri": store, "endpoint_url": endpoint_url or spec.storage.endpoint_url})
        study = cls(spec.model_copy(update={"storage": storage}), run_id=paths.run_id, **kwargs)
        planned = {t.trial_id for t in study.trials()}
        foreign = sorted(r.trial_id for r in scan_trial_records(opened, paths)[0] if r.trial_id not in planned)
        if foreign:
            raise StudyError(f"{opened.url(paths.spec)}: run {paths.run_id} holds {len(foreign)} trial(s) its "
                             f"spec.yaml does not plan (e.g. {foreign[0]}; was the file edited after the run "
                             "started?); resume refused, nothing was started or written: restore the spec or "
                             "submit the edited file as a new run")
        return study

    def trials(self) -> list["TrialConfig"]:
        """Every trial of the grid (pure: the same file gives the same trial ids)."""
        from orchestrator.spec.grid import expand_grid

        return expand_grid(self.spec)

    def plan(self) -> StudyPlan:
        """The dry run: every trial, the Ray bundle it requests, and the estimated wall time and cost on the
        cluster config's node types (else this machine), from throughput measured in the store where there is
        some, else the reference figures. Starts nothing, imports no framework."""
        from orchestrator.execution import plan
        from orchestrator.execution.placement import trial_bundle
        from orchestrator.execution.run_steps import store_settings
        from workers.storage import open_store

        trials = self.trials()
        pools = plan.cluster_pools([], self.cluster_config) if self.cluster_config else None
        estimate = plan.plan_study(self.spec, trials, open_store(**store_settings(self.spec)), pools)
        return StudyPlan(self.spec.name, [PlannedTrial(t, trial_bundle(t.resources)) for t in trials], estimate)

    def calibrate(self, *, notify: Callable[[str], None] = print) -> list[dict]:
        """Run the short calibration trials (``execution/calibration.py``) of this study's settings that the store
        has not cached yet, on the study's cluster; afterwards ``plan()`` and ``run()`` estimate from them."""
        from orchestrator.execution.calibration import calibrate

        self.check_inputs()
        self.spec = with_calibration(self.spec)
        return calibrate(self.spec, self.trials(), address=self.address, num_cpus=self.num_cpus,
                         cluster_config=self.cluster_config, notify=notify)

    def check_inputs(self) -> None:
        """What can be checked before anything starts: the dataset's contents (layout, special files, label file,
        image headers, classes, whether the split can be made: ``workers.data.layout.check_dataset_contents``), a
        local store that can be written, weights files; ``BadInput`` names the first problem. Remote (s3://)
        inputs are checked when the data is prepared."""
        from workers.data.layout import check_dataset_contents
        from workers.data.sources import DatasetError

        spec = self.spec
        try:
            check_dataset_contents(spec.dataset.model_dump(mode="json"), spec.split.model_dump(mode="json"))
        except DatasetError as err:
            raise BadInput(str(err)) from None
        _check_store_writable(spec)
        for arch, model in spec.models.items():
            if model.weights_path and "://" not in model.weights_path and not Path(model.weights_path).is_file():
                raise BadInput(f"models.{arch}.weights_path: file '{model.weights_path}' does not exist")

    def run(self, *, strict: bool = False, show_progress: bool = True,
            notify: Callable[[str], None] = print) -> StudyResult:
        """Run every trial not yet completed, store its record as it ends, then write the report."""
        from orchestrator.execution.study_runner import execute_study
        from orchestrator.report import write_report
        from orchestrator.tracking import attach_report

        self.check_inputs()
        outcome = execute_study(self.spec, run_id=self.run_id, address=self.address, strict=strict,
                                show_progress=show_progress, notify=notify, num_cpus=self.num_cpus,
                                cluster_config=self.cluster_config, trainable=self.trainable)
        self.run_id = outcome.paths.run_id
        url = write_report(outcome.store, outcome.paths)  # a remote store that fails falls back to local disk
        url = attach_report(outcome.store, outcome.paths, notify) or url  # onto the study's MLflow run, if any
        return StudyResult(outcome.paths, outcome.store, outcome.records, outcome.counts, url,
                           store_problem=_store_problem(outcome, url, self.spec), unfinished=outcome.unfinished)

    def submit(self, address: str, *, strict: bool = False, store: str | None = None,
               notify: Callable[[str], None] | None = None) -> str:
        """Queue the study on a remote cluster as a Ray Job; returns the job id at once.

        The run id is chosen here (``self.run_id``, unless the study continues a given one) and travels in the
        job's entrypoint and metadata, so ``orchestrator list`` / ``status`` find the run's run.json.

        Inputs (dataset paths, a directory store, weights files) are checked where the study runs: the job's
        driver checks them first and fails in seconds with one line. With ``strict`` the cluster's live nodes
        (read through its dashboard) and the ``cluster_config``'s node types must be able to run every trial, or
        nothing is submitted."""
        from orchestrator.cluster.jobs import submit_job
        from orchestrator.execution.run_steps import new_run_id

        if self.file is None:
            raise StudyError("only a study made with Study.from_file can be submitted as a Ray Job "
                             "(a stored run continues with Study.submit_resume)")
        if strict:
            self._refuse_infeasible_on(address)
        self.run_id = self.run_id or new_run_id()
        return submit_job(str(self.file), address=address, store=store, strict=strict, run_id=self.run_id,
                          notify=notify, calibrate=self.spec.plan.calibrate)

    @staticmethod
    def submit_resume(run: str, address: str, *, store: str = "results", endpoint_url: str | None = None,
                      notify: Callable[[str], None] | None = None) -> str:
        """Continue the stored run ``run`` (``run_id`` or ``experiment/run_id``) on the cluster at ``address`` as
        a Ray Job that resumes it in the same store; returns the job id at once."""
        from orchestrator.cluster.jobs import submit_resume_job
        from orchestrator.runs import check_run_name

        check_run_name(run)
        return submit_resume_job(run, address, store, endpoint_url=endpoint_url, notify=notify,
                                 experiment=_experiment_of(run, store, endpoint_url))

    def _refuse_infeasible_on(self, address: str) -> None:
        from orchestrator.cluster.jobs import live_nodes
        from orchestrator.execution.placement import place_trials

        _, _, infeasible = place_trials(self.spec, self.trials(), self.cluster_config or {}, lambda _: None,
                                        live=live_nodes(address))
        if infeasible:
            raise StudyError(f"{len(infeasible)} trial(s) cannot run on the cluster at {address} (--strict), nothing "
                             f"was submitted: {next(iter(infeasible.values()))}")


def _experiment_of(run: str, store: str, endpoint_url: str | None) -> str | None:
    """The experiment of a stored run when the store can be read from here (it may live on the head node only)."""
    from orchestrator.runs import find_run, open_runs_store

    try:
        return find_run(open_runs_store(store, endpoint_url), run).experiment
    except Exception:
        return None


def with_store(spec: "ExperimentSpec", store: str | None) -> "ExperimentSpec":
    """``spec`` with ``storage.uri`` replaced by ``store`` (unchanged when None)."""
    if not store:
        return spec
    from workers.storage import check_store_uri

    try:
        check_store_uri(store)
    except ValueError as err:
        raise BadInput(str(err).replace("storage.uri:", "--store:", 1)) from None
    return spec.model_copy(update={"storage": spec.storage.model_copy(update={"uri": store})})


def _check_store_writable(spec: "ExperimentSpec") -> None:
    """A local store must be a directory this process can write (or one it can create); nothing stays written."""
    import tempfile

    uri = spec.storage.uri
    if "://" in uri:
        return
    path = Path(uri).expanduser().resolve()
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if existing is None:
        return
    if not existing.is_dir():
        raise BadInput(f"storage.uri: '{existing}' is a file, not a directory; give a directory for the store")
    try:  # a probe file, removed at once: permissions, read-only mounts and full disks all show here
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".write-probe-"):
            pass
    except OSError as err:
        raise BadInput(f"storage.uri: '{existing}' is not writable ({err.strerror}); give a directory you can "
                       "write") from None


def with_budget(spec: "ExperimentSpec", budget_usd: float | None) -> "ExperimentSpec":
    """``spec`` with ``execution.budget_usd`` replaced by ``budget_usd`` (unchanged when None)."""
    if budget_usd is None:
        return spec
    return spec.model_copy(update={"execution": spec.execution.model_copy(update={"budget_usd": budget_usd})})


def with_calibration(spec: "ExperimentSpec", calibrate: bool = True) -> "ExperimentSpec":
    """``spec`` with ``plan.calibrate`` switched on (unchanged when ``calibrate`` is False)."""
    if not calibrate:
        return spec
    return spec.model_copy(update={"plan": spec.plan.model_copy(update={"calibrate": True})})


def _load_cluster_config(config: dict | str | None) -> dict | None:
    if config is None or isinstance(config, dict):
        return config
    from orchestrator.spec.node_types import load_cluster_config

    try:
        return load_cluster_config(config)
    except ValueError as err:
        raise BadInput(str(err)) from None


def _store_problem(outcome, url: str, spec: "ExperimentSpec") -> str | None:
    store = outcome.store
    if not getattr(store, "degraded", False):
        return None
    local = store.fallback
    endpoint = f" --endpoint-url {spec.storage.endpoint_url}" if spec.storage.endpoint_url else ""
    if not store.journal:
        return (f"the store {store.uri} could not be written any more ({store.error}); records written before "
                f"are kept there, the rest and the report under {local.uri}/{outcome.paths.root} (report: {url}); "
                f"nothing finished was lost: once the store can be written, publish them with 'orchestrator report "
                f"{outcome.paths.run_id} --store {local.uri} --upload {store.uri}'")
    return (f"the store {store.uri} became unreachable ({store.error}); results and report are kept locally under "
            f"{local.uri}/{outcome.paths.root} (report: {url}); publish them with 'orchestrator report "
            f"{outcome.paths.run_id} --store {local.uri} --upload {store.uri}{endpoint}'")
