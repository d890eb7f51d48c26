"""``ntune submit``: a study as a Ray Job, so the driver (``ntune run``) runs on the cluster.

The study is validated here first (nothing is submitted for a bad study, a bad address or an
unreachable head). The study file, and its base config file when ``base:`` names one, travel with the
job in its ``runtime_env`` working directory: the same names and relative layout, so ``base:`` paths
relative to the study file resolve on the cluster as they do here and ``study.json`` is the same as a
local run's (a base outside the study's folder is inlined instead). The job's entrypoint is
``ntune run <study> [--set ...] [--name ...] [--storage ...] [--fresh]``; the cluster's nodes must have
ntune installed (the image of ``docker/Dockerfile``), at the version submitting.

The job runs in a temporary folder on the head, so the results must go where this machine can read
them: ``storage_path`` must be an absolute folder both the cluster and this machine mount (NFS, EFS, a
shared volume; on one machine any folder) or an object-store URI (``s3://bucket/prefix``). A relative
``storage_path`` is refused. This is a Ray adapter (the job submission API).
"""

from __future__ import annotations

import asyncio
import os
import shlex
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml

from ntune.config import ConfigError
from ntune.study.config import StudyConfig
from ntune.study.load import load_study, relocated
from ntune.study.storage import is_uri, join
from ntune.yamlio import read_yaml

ADDRESS_ENV = ("RAY_API_SERVER_ADDRESS", "RAY_ADDRESS")  # where Ray's own `ray job` looks, in order
FINAL_STATES = ("SUCCEEDED", "FAILED", "STOPPED")


@dataclass(frozen=True)
class Submission:
    """What ``ntune submit`` did: the job, where to watch it, where its results go."""

    job_id: str
    address: str
    study: str
    experiment: str
    entrypoint: str

    @property
    def dashboard_url(self) -> str:
        """The job's page in the Ray dashboard."""
        return f"{self.address}/#/jobs/{self.job_id}"


def dashboard_address(address: str | None) -> str:
    """The head's dashboard URL (``http://HEAD:8265``) from ``--address`` or $RAY_API_SERVER_ADDRESS / $RAY_ADDRESS.

    Raises ConfigError naming ``--address`` when none is given or it is not an http(s) URL with a host.
    """
    given = address or next((os.environ[k] for k in ADDRESS_ENV if os.environ.get(k)), None)
    if not given:
        raise ConfigError(
            "--address: give the Ray dashboard URL of the cluster's head, e.g. --address http://HEAD:8265"
        )
    parsed = urlparse(given)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ConfigError(
            f"--address: {given!r} is not the dashboard's URL; use http://HEAD:8265 or https://... "
            "(the job API lives on the dashboard port, not on the GCS port 6379 or ray://)"
        )
    return given.rstrip("/")


def job_name(study: str, now: float | None = None) -> str:
    """The job's submission id: ``ntune-<study>-<YYYYmmdd-HHMMSS>`` (unique per submission second)."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(time.time() if now is None else now))
    return f"ntune-{study}-{stamp}"


def located_study(
    study_path: str | Path, overrides: list[str] | None, name: str | None, storage: str | None
) -> StudyConfig:
    """The validated study with ``--name`` / ``--storage`` applied; refuses a relative storage_path."""
    study, _ = load_study(study_path, overrides)
    study = relocated(study, name, storage)
    where = study.storage_path
    if not is_uri(where) and not Path(where).expanduser().is_absolute():
        raise ConfigError(
            f"storage_path: {where!r} is relative, and a submitted study runs in a temporary folder on the "
            "cluster; give a folder the cluster and this machine both see at the same absolute path, or an "
            "object-store URI (--storage /mnt/shared/ntune_results or --storage s3://bucket/prefix)"
        )
    return study


def experiment_of(study: StudyConfig) -> str:
    """Where the submitted study's experiment folder will be: ``storage_path/name`` (a path or a URI)."""
    if is_uri(study.storage_path):
        return join(study.storage_path, study.name)
    return str(Path(study.storage_path).expanduser() / study.name)


def stage_study(study_path: str | Path, dest: Path) -> str:
    """Copy the study file (and its ``base:`` file) into ``dest``; the study's path relative to ``dest``.

    A base given as a path inside the study's folder keeps its relative place; any other base file
    (absolute, or up with ``..``) is inlined into the staged study as a mapping.
    """
    study_path = Path(study_path)
    data = read_yaml(study_path)
    base = data.get("base") if isinstance(data, dict) else None
    staged = dest / study_path.name
    if isinstance(base, str):
        rel = Path(base)
        source = rel if rel.is_absolute() else study_path.parent / rel
        if not rel.is_absolute() and ".." not in rel.parts:
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, dest / rel)
        else:
            data["base"] = read_yaml(source)
            staged.write_text(yaml.safe_dump(data, sort_keys=False))
            return staged.name
    shutil.copyfile(study_path, staged)
    return staged.name


def entrypoint(
    study_file: str, overrides: list[str] | None, name: str | None, storage: str | None, fresh: bool
) -> str:
    """The job's shell command: ``ntune run`` of the staged study with the same options."""
    args = ["ntune", "run", study_file]
    for item in overrides or []:
        args += ["--set", item]
    if name:
        args += ["--name", name]
    if storage:
        args += ["--storage", storage]
    if fresh:
        args.append("--fresh")
    return shlex.join(args)


def _client(address: str) -> Any:
    """A JobSubmissionClient of ``address``; an unreachable head is a ConfigError naming ``--address``."""
    from ray.exceptions import AuthenticationError
    from ray.job_submission import JobSubmissionClient

    try:
        return JobSubmissionClient(address)
    except (ConnectionError, RuntimeError, ValueError, AuthenticationError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"--address: cannot reach the Ray dashboard at {address} ({first})") from None


# A head whose dashboard is up may not have its job agent yet (just after `ray start`): Ray answers
# "No available agent to submit job, please try again later", so ntune does, for up to AGENT_WAIT_S.
AGENT_WAIT_S = 60.0
NO_AGENT = "No available agent to submit job"


def submit_when_ready(client: Any, *, wait_s: float = AGENT_WAIT_S, pause_s: float = 2.0, **job: Any) -> None:
    """``client.submit_job(**job)``, tried again while the head has no job agent yet (at most ``wait_s``)."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            client.submit_job(**job)
            return
        except RuntimeError as err:
            if NO_AGENT not in str(err) or time.monotonic() + pause_s > deadline:
                raise
            time.sleep(pause_s)


def submit_study(
    study_path: str | Path,
    *,
    address: str | None,
    overrides: list[str] | None = None,
    name: str | None = None,
    storage: str | None = None,
    fresh: bool = False,
    now: float | None = None,
) -> Submission:
    """Validate the study and the address, then submit ``ntune run`` as a Ray Job; returns what was done."""
    url = dashboard_address(address)
    study = located_study(study_path, overrides, name, storage)
    client = _client(url)
    job_id = job_name(study.name, now)
    experiment = experiment_of(study)
    with tempfile.TemporaryDirectory(prefix="ntune-submit-") as tmp:
        study_file = stage_study(study_path, Path(tmp))
        command = entrypoint(study_file, overrides, name, storage, fresh)
        try:
            submit_when_ready(
                client,
                entrypoint=command,
                submission_id=job_id,
                runtime_env={"working_dir": tmp},
                metadata={"job_name": job_id, "ntune_study": study.name, "ntune_experiment": experiment},
            )
        except (ConnectionError, RuntimeError) as err:  # e.g. the id is taken, the upload was refused
            raise ConfigError(f"the head at {url} refused the job ({str(err).strip()[:500]})") from None
    return Submission(job_id, url, study.name, experiment, command)


def follow_job(address: str, job_id: str, write: Callable[[str], None]) -> str:
    """Pass the job's log lines to ``write`` as they come until it ends; its final status (e.g. SUCCEEDED)."""
    client = _client(address)

    async def tail() -> None:
        async for chunk in client.tail_job_logs(job_id):
            write(chunk)

    asyncio.run(tail())
    status = str(client.get_job_status(job_id))
    while status.rsplit(".", 1)[-1] not in FINAL_STATES:  # the log stream can close just before the status
        time.sleep(1.0)
        status = str(client.get_job_status(job_id))
    return status.rsplit(".", 1)[-1]


def job_info(address: str, job_id: str) -> Any:
    """The job's ``JobDetails`` (status, metadata, submission id, ...) as Ray's job API reports them."""
    return _client(address).get_job_info(job_id)
