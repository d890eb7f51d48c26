"""The ``ntune`` command line: each command is one call into the modules of the package."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from ntune.config import ConfigError, NtuneConfig, dump_config, load_config
from ntune.console import make_console

app = typer.Typer(
    help=(
        "ntune: hyperparameter search on Ray Tune for GNN recovery of the PDE_N2 connectivity matrix W\n"
        "and the neuron types, across sparsity levels."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Inspect and convert configs.", no_args_is_help=True)
app.add_typer(config_app, name="config")
cache_app = typer.Typer(
    help="The simulation cache ($NTUNE_CACHE, default ~/.cache/ntune): list its entries, delete the oldest.",
    no_args_is_help=True,
)
app.add_typer(cache_app, name="cache")
CacheDirOpt = Annotated[
    Path | None, typer.Option("--dir", help="The cache folder (default: $NTUNE_CACHE, else ~/.cache/ntune).")
]

console = make_console()
err_console = make_console(stderr=True, soft_wrap=True)

SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="Override a field, e.g. --set training.coeff_W_L1=1e-5 (repeatable)."),
]
ConfigArg = Annotated[Path, typer.Argument(help="A run config YAML (simulation, graph_model, training).")]


def _fail(err: Exception) -> typer.Exit:
    """Print ``error: <message>`` (the message verbatim: no rich markup, no highlighting); exit code 2."""
    err_console.print(Text.assemble(("error:", "bold red"), " ", str(err)), markup=False, highlight=False)
    return typer.Exit(code=2)


def _load(config: Path, overrides: list[str] | None, what: str | None = None) -> NtuneConfig:
    """Load and validate ``config``; with ``what`` ("simulation" or "trial") also check that it fits in memory."""
    from ntune.study.guards import check_memory

    try:
        cfg = load_config(config, overrides)
        if what is not None:
            check_memory(cfg, what)
        return cfg
    except ConfigError as err:
        raise _fail(err) from None


@config_app.command("show")
def config_show(config: ConfigArg, set_: SetOpt = None) -> None:
    """Print the resolved config (defaults filled in, overrides applied)."""
    console.print(dump_config(_load(config, set_)), end="", highlight=False, markup=False)


@config_app.command("import")
def config_import(
    upstream: Annotated[
        Path,
        typer.Argument(
            help="An upstream NeuralGraph signal YAML (PDE_N2, or PDE_N4 such as signal_chaotic)."
        ),
    ],
    out: Annotated[Path | None, typer.Option(help="Write the ntune config here (default: print it).")] = None,
) -> None:
    """Convert an upstream NeuralGraph signal config (PDE_N2 or PDE_N4); lists the upstream fields ntune ignores."""
    from ntune.upstream import import_upstream

    try:
        config, ignored = import_upstream(upstream)
    except ConfigError as err:
        raise _fail(err) from None
    text = dump_config(config, out)
    if out is None:
        console.print(text, end="", highlight=False, markup=False)
    else:
        console.print(f"wrote {out}")
    if ignored:
        err_console.print(f"ignored upstream fields: {', '.join(ignored)}", highlight=False, markup=False)


@config_app.command("reference")
def config_reference(
    out: Annotated[Path | None, typer.Option(help="Write the reference here (default: print it).")] = None,
) -> None:
    """Print every field of the run config and the study config: type, default, allowed values, meaning.

    The markdown of docs/reference.md, generated from the pydantic models (`--out docs/reference.md`).
    """
    from ntune.report.reference import reference_markdown

    text = reference_markdown()
    if out is None:
        console.out(text, end="", highlight=False)
    else:
        out.write_text(text)
        console.print(f"wrote {out}", highlight=False, markup=False)


@cache_app.command("list")
def cache_list(cache_dir: CacheDirOpt = None) -> None:
    """Every cached simulation, oldest first: what it holds, its size on disk, when it was written."""
    from ntune.cli.cache import cache_list_command

    cache_list_command(cache_dir, console=console)


@cache_app.command("prune")
def cache_prune(
    older_than: Annotated[
        float | None, typer.Option(help="Delete entries last written more than this many days ago.")
    ] = None,
    keep_gb: Annotated[
        float | None, typer.Option(help="Then delete the oldest until the cache holds at most this many GB.")
    ] = None,
    dry_run: Annotated[bool, typer.Option(help="Only list what would be deleted.")] = False,
    cache_dir: CacheDirOpt = None,
) -> None:
    """Delete cached simulations, oldest first; a run that needs one simulates it again.

    An entry another process is building now is kept."""
    from ntune.cli.cache import cache_prune_command

    try:
        cache_prune_command(
            cache_dir, older_than_days=older_than, keep_gb=keep_gb, dry_run=dry_run, console=console
        )
    except ConfigError as err:
        raise _fail(err) from None


@app.command()
def simulate(config: ConfigArg, set_: SetOpt = None) -> None:
    """Simulate (or load from the cache) the network of CONFIG; writes activity.png and connectivity.png."""
    from ntune.cli.commands import simulate_command

    cfg = _load(config, set_, "simulation")
    try:
        simulate_command(cfg, console=console)
    except ConfigError as err:  # e.g. the simulated data are not finite
        raise _fail(err) from None


@app.command()
def train(
    config: ConfigArg,
    set_: SetOpt = None,
    out: Annotated[Path | None, typer.Option(help="Output folder (default: runs/train-<time>).")] = None,
    metrics_jsonl: Annotated[
        Path | None,
        typer.Option(
            "--metrics-jsonl",
            help="Also write each progress report and the final metrics to this file as it trains, one JSON "
            "line each (what a study's command trainer reads).",
        ),
    ] = None,
) -> None:
    """Train a SignalGNN on CONFIG's data; writes config, metrics, checkpoint, plots, TensorBoard events."""
    from ntune.cli.commands import train_command

    cfg = _load(config, set_, "trial")
    try:
        code = train_command(cfg, out=out, console=console, metrics_jsonl=metrics_jsonl)
    except ConfigError as err:  # e.g. the simulated data are not finite
        raise _fail(err) from None
    raise typer.Exit(code=code)


@app.command()
def run(
    study: Annotated[Path, typer.Argument(help="A study YAML (base config, blocks, search space, budget).")],
    set_: SetOpt = None,
    address: Annotated[
        str | None, typer.Option(help="Join this Ray cluster (default: $RAY_ADDRESS, else an embedded Ray).")
    ] = None,
    name: Annotated[str | None, typer.Option(help="Experiment name (default: the study's name).")] = None,
    storage: Annotated[
        str | None,
        typer.Option(
            help="Storage folder or URI, e.g. s3://bucket/prefix (default: the study's storage_path)."
        ),
    ] = None,
    fresh: Annotated[
        bool, typer.Option(help="Start over instead of resuming an experiment of this name.")
    ] = False,
) -> None:
    """Run (or resume) a study: one UCB tree per block, trials in parallel on Ray Tune."""
    from ntune.cli.run import run_command

    try:
        code = run_command(study, overrides=set_, address=address, name=name, storage=storage, fresh=fresh)
    except ConfigError as err:
        raise _fail(err) from None
    raise typer.Exit(code=code)


ExpArg = Annotated[
    str,
    typer.Argument(help="An experiment folder (storage_path/name), or its URI (s3://bucket/prefix/name)."),
]


@app.command()
def status(
    experiment: ExpArg,
    watch: Annotated[
        bool,
        typer.Option(
            help="Refresh a live table (blocks, running trials and their progress) until the study ends or Ctrl-C."
        ),
    ] = False,
    interval: Annotated[float, typer.Option(help="Seconds between refreshes of --watch (> 0).")] = 2.0,
) -> None:
    """Per-block table of a finished, running or interrupted experiment (--watch: live, with the running trials)."""
    from ntune.cli.commands import status_command, watch_command

    if not interval > 0:
        raise _fail(ConfigError(f"--interval: {interval} must be a number of seconds > 0"))
    try:
        if watch:
            watch_command(experiment, console=console, interval=interval)
        else:
            status_command(experiment, console=console)
    except (ConfigError, FileNotFoundError) as err:
        raise _fail(err) from None


@app.command()
def submit(
    study: Annotated[Path, typer.Argument(help="A study YAML (its base config file travels with it).")],
    address: Annotated[
        str | None,
        typer.Option(
            help="The Ray dashboard URL of the cluster's head, e.g. http://HEAD:8265 "
            "(default: $RAY_API_SERVER_ADDRESS, else $RAY_ADDRESS)."
        ),
    ] = None,
    set_: SetOpt = None,
    name: Annotated[str | None, typer.Option(help="Experiment name (default: the study's name).")] = None,
    storage: Annotated[
        str | None,
        typer.Option(
            help="Where the results go (default: the study's storage_path): an absolute folder that the cluster "
            "and this machine both see at that path, or a URI such as s3://bucket/prefix. Required to be one "
            "of these: the job runs in a temporary folder on the cluster."
        ),
    ] = None,
    fresh: Annotated[
        bool, typer.Option(help="Start over instead of resuming an experiment of this name.")
    ] = False,
    follow: Annotated[
        bool, typer.Option(help="Print the job's log until it ends; exit 0 if it succeeded.")
    ] = False,
) -> None:
    """Submit a study as a Ray Job: `ntune run` runs on the cluster; this machine may then disconnect.

    The cluster's nodes need ntune installed at this version (the docker/ image). The job is named
    ntune-<study>-<time>; ntune status/export/report read the results from the storage.
    """
    from ntune.tune.submit import follow_job, submit_study

    try:
        job = submit_study(study, address=address, overrides=set_, name=name, storage=storage, fresh=fresh)
    except (ConfigError, FileNotFoundError) as err:
        raise _fail(err) from None
    console.print(f"submitted job {job.job_id}: {job.entrypoint}", highlight=False, markup=False)
    console.print(f"dashboard: {job.dashboard_url}", highlight=False, markup=False)
    console.print(f"experiment: {job.experiment}", highlight=False, markup=False)
    console.print(
        f"follow it: ray job logs --address {job.address} --follow {job.job_id}\n"
        f"watch it:  ntune status {job.experiment} --watch\n"
        f"stop it:   ray job stop --address {job.address} {job.job_id}",
        highlight=False,
        markup=False,
    )
    if follow:
        try:
            state = follow_job(
                job.address, job.job_id, lambda text: console.out(text, end="", highlight=False)
            )
        except KeyboardInterrupt:
            console.print(f"stopped following; job {job.job_id} goes on", highlight=False, markup=False)
            raise typer.Exit(code=130) from None
        console.print(f"job {job.job_id}: {state}", highlight=False, markup=False)
        raise typer.Exit(code=0 if state == "SUCCEEDED" else 1)


@app.command()
def export(
    experiment: ExpArg,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Output folder (default: EXPERIMENT/best, EXPERIMENT/upstream for upstream); for optuna the "
            "journal file (default: EXPERIMENT/optuna.log)."
        ),
    ] = None,
    format_: Annotated[
        str,
        typer.Option(
            "--format",
            help="yaml (best config per block), csv, json, ucb-txt, upstream (the best configs written into "
            "--template), optuna (an Optuna journal, one study per block: optuna-dashboard FILE) or ranges "
            "(ranges.csv, ranges.json, regions.json: where training works around each block's robust config).",
        ),
    ] = "yaml",
    template: Annotated[
        Path | None,
        typer.Option(help="For --format upstream: your upstream NeuralGraph YAML, copied per block."),
    ] = None,
) -> None:
    """Export the best config per block (robust configs preferred) and summary.csv, or the study for Optuna."""
    from ntune.cli.commands import export_command

    try:
        export_command(experiment, out=out, fmt=format_, template=template, console=console)
    except (ConfigError, FileNotFoundError) as err:
        raise _fail(err) from None


@app.command()
def report(experiment: ExpArg) -> None:
    """Write report.md: comparison table, R^2 and cluster accuracy against filling factor, trees, Pareto fronts
    and parameter importances (with ntune[optuna]), scatters, learning curves of each block's best config."""
    from ntune.cli.commands import report_command

    try:
        report_command(experiment, console=console)
    except (ConfigError, FileNotFoundError) as err:
        raise _fail(err) from None


def main() -> None:
    """Entry point of the ``ntune`` console script."""
    app()


if __name__ == "__main__":
    main()
