"""Experiments on object storage: ``storage_path`` as a URI (``s3://bucket/prefix``, ``gs://...``).

Ray Tune writes its own state and the trial folders to the URI; ntune's journal keeps writing plain
files into a local folder, the **mirror**, and :class:`Remote` copies them up (after each completion
and at the end of a run). ``ntune status``, ``export``, ``report`` and a resumed run first copy the
experiment's journal files down into a mirror, then work on it as on a local experiment folder.

Any filesystem ``pyarrow.fs.FileSystem.from_uri`` knows works (s3, gs, hdfs, abfs, ...). An
S3-compatible store (MinIO, Ceph, moto) is reached through the standard ``AWS_ENDPOINT_URL``
environment variable (``AWS_ENDPOINT_URL_S3`` takes precedence), set on every node; credentials come
from the provider's usual environment variables or files. Mirrors live under ``$NTUNE_MIRROR_DIR``
(default ``~/.cache/ntune/experiments``). No Ray.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from ntune.config import ConfigError

SCHEMES = ("s3", "gs", "gcs", "hdfs", "viewfs", "abfs", "abfss")
# the journal's files (see ntune.study.journal) and what a run, status, export or report reads of them
LIVE_FILE = "running.json"  # each running trial's latest evaluation (see ntune.report.live)
JOURNAL_FILES = ("study.json", "trials.jsonl", "analysis.md", "memory.md", LIVE_FILE)
JOURNAL_DIRS = ("ucb", "blocks", "trees")
TUNE_STATE = "tuner.pkl"  # its presence says Tune can restore the experiment


def is_uri(path: str | Path) -> bool:
    """True for ``scheme://...`` other than ``file://`` (a local folder)."""
    text = str(path)
    return "://" in text and not text.startswith("file://")


def endpoint() -> str | None:
    """The S3 endpoint of an S3-compatible store: $AWS_ENDPOINT_URL_S3, else $AWS_ENDPOINT_URL."""
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None


def check_uri(uri: str, field: str = "storage_path") -> None:
    """Refuse a URI with an unknown scheme or no bucket (raises ConfigError naming ``field``); no I/O."""
    parsed = urlparse(uri)
    if parsed.scheme not in SCHEMES:
        raise ConfigError(
            f"{field}: {uri!r} has the scheme {parsed.scheme!r}; use a local folder or one of: "
            + ", ".join(f"{s}://" for s in SCHEMES)
        )
    if not parsed.netloc:
        raise ConfigError(f"{field}: {uri!r} names no bucket; give {parsed.scheme}://BUCKET/prefix")


def filesystem(uri: str) -> tuple[Any, str]:
    """(pyarrow filesystem, path on it without the scheme) of ``uri``; S3 honours :func:`endpoint`."""
    import pyarrow.fs as pafs

    check_uri(uri)
    parsed = urlparse(uri)
    url = endpoint()
    if parsed.scheme == "s3" and url:
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        fs = pafs.S3FileSystem(endpoint_override=url, region=region)
        return fs, f"{parsed.netloc}{parsed.path}".rstrip("/")
    try:
        fs, path = pafs.FileSystem.from_uri(uri)
    except (OSError, ValueError) as err:
        raise ConfigError(f"storage_path: cannot open {uri!r} ({err})") from None
    return fs, path.rstrip("/")


def join(uri: str, name: str) -> str:
    """``uri/name`` (one slash)."""
    return f"{uri.rstrip('/')}/{name}"


def mirror_dir(uri: str, kind: str = "view") -> Path:
    """The local mirror of the experiment at ``uri``: ``$NTUNE_MIRROR_DIR/<kind>/<hash>/<name>``.

    ``kind`` keeps a running driver's mirror (``run``) apart from the one ``status``, ``export`` and
    ``report`` refresh (``view``), so a command never overwrites files a running journal appends to.
    """
    root = Path(os.environ.get("NTUNE_MIRROR_DIR") or Path.home() / ".cache" / "ntune" / "experiments")
    digest = hashlib.sha256(uri.rstrip("/").encode()).hexdigest()[:12]
    return root.expanduser() / kind / digest / uri.rstrip("/").rsplit("/", 1)[-1]


class Remote:
    """An experiment folder on a pyarrow filesystem, copied to and from a local mirror folder.

    Picklable (the filesystem is made again after unpickling). ``push`` uploads only the files that
    changed since its last upload.
    """

    def __init__(self, uri: str) -> None:
        self.uri = uri.rstrip("/")
        self._fs: Any = None
        self._path = ""
        self._pushed: dict[str, tuple[int, int]] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {"uri": self.uri}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["uri"])  # type: ignore[misc]

    @property
    def fs(self) -> Any:
        """The pyarrow filesystem (made on first use)."""
        if self._fs is None:
            self._fs, self._path = filesystem(self.uri)
        return self._fs

    @property
    def path(self) -> str:
        """The experiment folder's path on :attr:`fs` (``bucket/prefix/name``)."""
        _ = self.fs
        return self._path

    def exists(self, name: str = "") -> bool:
        """Whether ``name`` (a path relative to the experiment folder; '' the folder) exists."""
        import pyarrow.fs as pafs

        target = f"{self.path}/{name}".rstrip("/")
        return bool(self.fs.get_file_info(target).type != pafs.FileType.NotFound)

    def check(self) -> None:
        """Raise ConfigError (naming storage_path) when the bucket does not exist or cannot be reached."""
        import pyarrow.fs as pafs

        bucket = self.path.split("/", 1)[0]
        try:
            missing = self.fs.get_file_info(bucket).type == pafs.FileType.NotFound
        except OSError as err:
            raise ConfigError(f"storage_path: cannot reach {self.uri} ({err})") from None
        if missing:
            raise ConfigError(
                f"storage_path: {self.uri}: the bucket {bucket!r} does not exist; create it first"
            )

    def delete(self) -> None:
        """Delete the experiment folder (``--fresh``)."""
        if self.exists():
            self.fs.delete_dir(self.path)

    def pull(self, local: Path, names: Iterable[str] = JOURNAL_FILES, dirs: Iterable[str] = ()) -> int:
        """Download the files ``names`` and the folders ``dirs`` that exist into ``local``; count of files."""
        import pyarrow.fs as pafs

        local.mkdir(parents=True, exist_ok=True)
        pairs: list[tuple[str, str]] = [(f"{self.path}/{n}", n) for n in names]
        for d in dirs:
            selector = pafs.FileSelector(f"{self.path}/{d}", recursive=True, allow_not_found=True)
            for info in self.fs.get_file_info(selector):
                if info.type == pafs.FileType.File:
                    pairs.append((info.path, info.path[len(self.path) + 1 :]))
        count = 0
        for src, rel in pairs:
            try:
                with self.fs.open_input_stream(src) as f:
                    data = f.read()
            except FileNotFoundError:
                continue
            dest = local / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(data)
            self._pushed[rel] = _stamp(dest)
            count += 1
        return count

    def push(
        self, local: Path, names: Iterable[str] = JOURNAL_FILES, dirs: Iterable[str] = JOURNAL_DIRS
    ) -> list[str]:
        """Upload the files ``names`` and the files under ``dirs`` of ``local`` that changed; their names."""
        rels = [n for n in names if (local / n).is_file()]
        for d in dirs:
            if (local / d).is_dir():
                rels += sorted(p.relative_to(local).as_posix() for p in (local / d).rglob("*") if p.is_file())
        sent = []
        for rel in rels:
            stamp = _stamp(local / rel)
            if self._pushed.get(rel) == stamp:
                continue
            with self.fs.open_output_stream(f"{self.path}/{rel}") as f:
                f.write((local / rel).read_bytes())
            self._pushed[rel] = stamp
            sent.append(rel)
        return sent


def _stamp(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_mtime_ns, st.st_size


def open_experiment(experiment: str | Path, dirs: Iterable[str] = ()) -> tuple[Path, Remote | None]:
    """A local experiment folder as is; a URI's journal files (and ``dirs``) downloaded into its mirror.

    Raises FileNotFoundError when the URI holds no ``study.json``.
    """
    if not is_uri(experiment):
        return Path(experiment), None
    remote = Remote(str(experiment))
    remote.check()
    local = mirror_dir(remote.uri, "view")
    if local.exists():
        shutil.rmtree(local)
    remote.pull(local, ("study.json", "trials.jsonl"), dirs)
    if not (local / "study.json").is_file():
        raise FileNotFoundError(
            f"{remote.uri}: no study.json; is this an ntune experiment (storage_path/name)?"
        )
    return local, remote
