"""The cluster launch files (docker/) and docs/cluster.md, checked without Docker, Kubernetes or SLURM.

* docker/cluster.yaml validates against the autoscaler schema shipped in the ray package, and with
  Ray's own ``prepare_config`` + ``validate_config`` (what ``ray up`` runs first);
* docker/rayjob.yaml and docker/slurm.sbatch parse (``yaml.safe_load_all``, ``bash -n``) and name the
  image and the Ray version of docker/Dockerfile and pyproject.toml;
* no launch file binds the dashboard to 0.0.0.0 or exposes the head outside its network;
* every command of docs/cluster.md that can run here runs (on a fake experiment folder), and every
  ``ntune``/``ray`` option the cluster-only commands use exists.
Fast: no Ray is started.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import ray
import yaml
from study_fakes import make_experiment

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
DOC = ROOT / "docs" / "cluster.md"
BIN = Path(sys.executable).parent
RAY_VERSION = "2.60.0"
BASE_IMAGE = f"rayproject/ray:{RAY_VERSION}-py311-gpu"
IMAGE = "<your-registry>/ntune:gpu"  # the placeholder users replace with their registry


def load_cluster() -> dict[str, Any]:
    return yaml.safe_load((DOCKER / "cluster.yaml").read_text())


def load_rayjob() -> tuple[dict[str, Any], dict[str, Any]]:
    docs = {d["kind"]: d for d in yaml.safe_load_all((DOCKER / "rayjob.yaml").read_text())}
    assert set(docs) == {"PersistentVolumeClaim", "RayJob"}
    return docs["RayJob"], docs["PersistentVolumeClaim"]


def rayjob_pods(job: dict[str, Any]) -> list[dict[str, Any]]:
    spec = job["spec"]["rayClusterSpec"]
    return [spec["headGroupSpec"]["template"]["spec"]] + [
        g["template"]["spec"] for g in spec["workerGroupSpecs"]
    ]


def code_lines(text: str) -> list[str]:
    """Non-comment lines of a shell script."""
    return [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


# --- docker/cluster.yaml -------------------------------------------------------------------------


def test_cluster_yaml_validates_against_the_autoscaler_schema() -> None:
    import jsonschema
    from ray.autoscaler._private.util import prepare_config, validate_config

    schema = json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())
    config = load_cluster()
    jsonschema.validate(config, schema)
    validate_config(prepare_config(copy.deepcopy(config)))  # what `ray up` checks before it starts

    # the checks can fail: a misspelt key and a head type that does not exist are rejected
    bad = copy.deepcopy(config)
    bad["docker"]["imgae"] = bad["docker"].pop("image")
    with pytest.raises(jsonschema.ValidationError, match="imgae"):
        jsonschema.validate(bad, schema)
    bad = copy.deepcopy(config)
    bad["head_node_type"] = "cpu_head"
    with pytest.raises(ValueError, match="head_node_type"):
        validate_config(prepare_config(bad))


def test_cluster_yaml_gpu_nodes_private_dashboard_shared_storage() -> None:
    config = load_cluster()
    nodes = config["available_node_types"]
    assert config["head_node_type"] in nodes
    assert all(n["resources"].get("GPU", 0) >= 1 for n in nodes.values()), "head and workers have GPUs"
    assert any(n.get("max_workers", 0) >= 1 for name, n in nodes.items() if name != config["head_node_type"])
    assert config["docker"]["image"] == IMAGE
    run_options = " ".join(config["docker"]["run_options"])
    assert "--gpus all" in run_options and "RAY_AUTH_MODE=token" in run_options
    assert "-v /mnt/shared:/mnt/shared" in run_options, "the shared results folder, same path everywhere"
    assert any("/mnt/shared" in c and "mount" in c for c in config["initialization_commands"])
    head = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head
    assert "0.0.0.0" not in json.dumps(config), "nothing may bind to all interfaces"
    assert "~/.ray/auth_token" in config["file_mounts"]


# --- docker/rayjob.yaml --------------------------------------------------------------------------


def test_rayjob_parses_gpu_workers_shared_volume_same_image() -> None:
    job, pvc = load_rayjob()
    assert job["apiVersion"] == "ray.io/v1"
    spec = job["spec"]
    assert spec["rayClusterSpec"]["rayVersion"] == RAY_VERSION
    assert "ReadWriteMany" in pvc["spec"]["accessModes"]
    head = spec["rayClusterSpec"]["headGroupSpec"]
    assert head.get("serviceType", "ClusterIP") == "ClusterIP", "the head is not exposed outside Kubernetes"
    assert "0.0.0.0" not in json.dumps(job), "ntune never asks for a dashboard on 0.0.0.0"
    workers = spec["rayClusterSpec"]["workerGroupSpecs"]
    assert any(
        int(c["resources"]["limits"].get("nvidia.com/gpu", 0)) >= 1
        for g in workers
        for c in g["template"]["spec"]["containers"]
    )
    mounts = set()
    for pod in rayjob_pods(job):
        claims = {
            v["name"]: v["persistentVolumeClaim"]["claimName"]
            for v in pod["volumes"]
            if "persistentVolumeClaim" in v
        }
        for c in pod["containers"]:
            assert c["image"] == IMAGE
            env = {e["name"]: e for e in c["env"]}
            assert (
                env["RAY_AUTH_MODE"]["value"] == "token"
                and "secretKeyRef" in env["RAY_AUTH_TOKEN"]["valueFrom"]
            )
            shared = [
                m["mountPath"] for m in c["volumeMounts"] if claims.get(m["name"]) == pvc["metadata"]["name"]
            ]
            assert len(shared) == 1
            mounts.add(shared[0])
    assert len(mounts) == 1, "every pod mounts the results volume at the same path"
    storage = spec["entrypoint"].split("--storage")[1].split()[0]
    assert storage.startswith(mounts.pop() + "/")
    assert spec["entrypoint"].startswith("ntune run ")


# --- docker/slurm.sbatch, docker/Dockerfile ------------------------------------------------------


def test_slurm_sbatch_parses_and_starts_head_workers_then_the_study() -> None:
    path = DOCKER / "slurm.sbatch"
    out = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    text = path.read_text()
    code = "\n".join(code_lines(text))
    assert "#SBATCH --nodes=" in text and "#SBATCH --gpus-per-node=" in text
    assert "ray start --head --block" in code and "ray start --block --address=" in code
    assert "--dashboard-host=127.0.0.1" in code and "0.0.0.0" not in code
    assert re.search(r'ntune run "\$study" --address "\$address" --storage "\$storage"', code)
    assert not re.search(r"\bray stop\b", code), "a bare `ray stop` ends every Ray on the node"
    assert f"ray_version={RAY_VERSION}" in code
    assert f"docker://{IMAGE}" in text


def test_dockerfile_base_image_torch_pin_and_regular_install() -> None:
    text = (DOCKER / "Dockerfile").read_text()
    code = code_lines(text)
    assert code[0] == f"FROM {BASE_IMAGE}"
    torch_pin = re.search(r"\$\(PIP\) install -q torch==([\d.]+)", (ROOT / "Makefile").read_text())
    assert torch_pin and f"ARG TORCH_VERSION={torch_pin.group(1)}" in code, "CUDA torch pinned, same version"
    assert 'pip install --no-cache-dir "torch==${TORCH_VERSION}" --index-url' in text
    installs = [line for line in code if "pip install" in line and "torch" not in line]
    assert installs and all(" -e " not in line and "--editable" not in line for line in installs)
    assert any(re.search(r"pip install --no-cache-dir \.( |$)", line) for line in installs)
    assert f"-t {IMAGE} ." in text, "the header builds the image the launch files name"
    assert f"ray.__version__ == '{RAY_VERSION}'" in text


def test_one_ray_version_everywhere() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert f'"ray[tune,default]=={RAY_VERSION}"' in pyproject
    assert ray.__version__ == RAY_VERSION
    job, _ = load_rayjob()
    versions = {
        "Dockerfile": re.search(r"FROM rayproject/ray:([\d.]+)-", (DOCKER / "Dockerfile").read_text()).group(
            1
        ),
        "rayjob.yaml": job["spec"]["rayClusterSpec"]["rayVersion"],
        "slurm.sbatch": re.search(
            r"^ray_version=([\d.]+)$", (DOCKER / "slurm.sbatch").read_text(), re.M
        ).group(1),
    }
    assert set(versions.values()) == {RAY_VERSION}, versions
    images = {load_cluster()["docker"]["image"]} | {
        c["image"] for p in rayjob_pods(job) for c in p["containers"]
    }
    assert images == {IMAGE}


# --- docs/cluster.md -----------------------------------------------------------------------------

FENCE = re.compile(r"^```(\w*)([^\n]*)\n(.*?)^```", re.M | re.S)
SKIP_TAGS = ("cluster-only", "server")  # runs only on a cluster / runs until stopped: not run here


def doc_commands() -> list[tuple[str, str]]:
    """(tag, command) for every shell command in docs/cluster.md; continuation lines joined."""
    out = []
    for lang, info, body in FENCE.findall(DOC.read_text()):
        if lang not in ("bash", "sh"):
            continue
        tag = next((t for t in SKIP_TAGS if t in info), "here")
        body = re.sub(r"\\\n\s*", " ", body)
        for line in body.splitlines():
            line = re.sub(r"\s+#\s.*$", "", line).strip()
            if line and not line.startswith("#"):
                out.append((tag, line))
    return out


def test_doc_marks_every_command() -> None:
    """Runnable blocks are plain ```bash; the others say why they cannot run here."""
    commands = doc_commands()
    tags = {t for t, _ in commands}
    assert tags == {"here", "cluster-only", "server"}, tags
    here = [c for t, c in commands if t == "here"]
    for needed in ("ntune status", "ntune export", "bash -n docker/slurm.sbatch"):
        assert any(c.startswith(needed) for c in here), needed
    for name in ("docker/cluster.yaml", "docker/rayjob.yaml", "docker/slurm.sbatch", "docker/Dockerfile"):
        assert name in DOC.read_text()


def test_doc_commands_that_can_run_here_run(tmp_path: Path) -> None:
    exp_parent = tmp_path / "ntune_results"
    make_experiment(exp_parent / "sparsity")
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}", RAY_AUTH_MODE="disabled")
    ran = 0
    for tag, command in doc_commands():
        if tag != "here":
            continue
        command = command.replace("ntune_results/", f"{exp_parent}/")
        out = subprocess.run(
            command, shell=True, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
        )
        assert out.returncode == 0, f"{command}\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}"
        ran += 1
    assert ran >= 5
    assert sorted(p.name for p in (exp_parent / "sparsity" / "best").glob("*.yaml"))


@cache
def cli_options(program: str, sub: str) -> str:
    out = subprocess.run(
        [str(BIN / program), *sub.split(), "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, COLUMNS="200"),
    )
    assert out.returncode == 0, f"{program} {sub} --help: {out.stderr[-500:]}"
    return out.stdout


def test_doc_cluster_only_commands_use_real_options() -> None:
    """Every --option of an ``ntune ...`` or ``ray ...`` command in the doc exists in that CLI."""
    checked = 0
    for _, command in doc_commands():
        try:
            words = shlex.split(command)
        except ValueError:
            continue
        if not words or words[0] not in ("ntune", "ray") or shutil.which(words[0], path=str(BIN)) is None:
            continue
        sub = next((w for w in words[1:] if not w.startswith("-")), "")
        if words[0] == "ray" and sub in ("", "--version"):
            continue
        help_text = cli_options(words[0], sub)
        for w in words[1:]:
            if w.startswith("--"):
                option = w.split("=")[0]
                assert option in help_text, f"{command}: {option} is not an option of `{words[0]} {sub}`"
                checked += 1
    assert checked >= 5
