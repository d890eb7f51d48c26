"""Reading YAML safely: config files, study files and ``--set a.b=c`` values.

:func:`read_yaml` and :func:`parse_overrides` raise :class:`ConfigError` naming the file or the field;
:func:`safe_yaml` refuses alias bombs before it builds the document. No pydantic, no torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A configuration problem; the message names the field path, the bad value and the valid choices."""


def read_yaml(path: str | Path) -> Any:
    """``yaml.safe_load`` a file, with errors that name the file."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path}: is a folder, not a YAML file")
    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file (binary data); give a YAML file") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot be read ({err.strerror or err})") from None
    if "\x00" in text:
        raise ConfigError(f"{path}: not a text file (binary data); give a YAML file")
    try:
        data = safe_yaml(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    except (ValueError, RecursionError) as err:
        raise ConfigError(f"{path}: refused: {err}") from None
    if data is None:
        raise ConfigError(
            f"{path}: the file is empty. ntune refuses empty configs, because all defaults mean upstream "
            "scale (1000 neurons x 100000 frames); write `simulation: {}` to ask for that on purpose"
        )
    return data


def parse_overrides(overrides: list[str] | None) -> list[tuple[str, Any]]:
    """Parse ``a.b=c`` strings; values are read as YAML (``1e-5``, ``[1, 2]``, ``true``)."""
    parsed = []
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like section.field=value")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key or any(not part for part in key.split(".")):
            raise ConfigError(f"override {item!r}: empty field path")
        try:
            parsed.append((key, yaml_value(raw)))
        except yaml.YAMLError as err:
            problem = str(getattr(err, "problem", "") or err).splitlines()[0]
            raise ConfigError(
                f"--set {key}: value {raw!r} is not valid YAML ({problem}); "
                "quote it or fix the brackets, e.g. --set 'a.b=[1, 2]'"
            ) from None
        except (ValueError, RecursionError) as err:
            raise ConfigError(f"--set {key}: value refused: {err}") from None
    return parsed


MAX_YAML_NODES = 100_000  # scalars, lists and mappings of a YAML document once its aliases are expanded


def _expanded_nodes(node: yaml.Node, memo: dict[int, int], path: set[int]) -> int:
    """How many nodes ``node`` stands for with every alias expanded (aliases share nodes: memoised)."""
    key = id(node)
    if key in memo:
        return memo[key]
    if key in path:
        raise ValueError("an alias refers to a node that contains it (a recursive YAML structure)")
    path.add(key)
    if isinstance(node, yaml.SequenceNode):
        children = list(node.value)
    elif isinstance(node, yaml.MappingNode):
        children = [n for pair in node.value for n in pair]
    else:
        children = []
    total = 1
    for child in children:
        total += _expanded_nodes(child, memo, path)
        if total > MAX_YAML_NODES:
            break
    path.discard(key)
    memo[key] = total
    return total


def safe_yaml(text: str) -> Any:
    """``yaml.safe_load`` that refuses, before building it, a document whose aliases expand to more than
    ``MAX_YAML_NODES`` nodes (a "billion laughs" file) or refer to themselves; raises ``ValueError``
    (with what is wrong) or ``yaml.YAMLError``."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        n = _expanded_nodes(node, {}, set())
        if n > MAX_YAML_NODES:
            raise ValueError(
                f"its aliases (*name) expand to more than {MAX_YAML_NODES} values; "
                "a config is a few hundred at most: write the values out or use fewer nested aliases"
            )
        return loader.construct_document(node)
    finally:
        loader.dispose()


def yaml_value(raw: str) -> Any:
    """A ``--set`` value read as YAML; a string that reads as a number is that number (``1e-5``)."""
    value = safe_yaml(raw) if raw.strip() else ""
    if isinstance(value, str):
        try:
            return float(value) if any(c in value for c in ".eE") else int(value)
        except ValueError:
            return value
    return value
