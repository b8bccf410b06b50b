"""The docs hold to the code: the config reference is what the models say, and the README's links lead somewhere."""

from __future__ import annotations

import importlib.util
import re

from support import REPO

from bpcore import kinds
from bpcore.config.serial import flatten, to_dict
from bpcore.kinds import load_config


def _generator():
    """tools/config_reference.py, the page's generator, imported by its path (tools/ is not a package)."""
    spec = importlib.util.spec_from_file_location("config_reference", REPO / "tools" / "config_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


reference = _generator().reference


def test_the_committed_config_reference_is_what_the_models_generate():
    page = (REPO / "docs" / "config-reference.md").read_text()
    assert page == reference() + "\n", "docs/config-reference.md is stale: python tools/config_reference.py > it"


def test_every_key_of_every_shipped_config_is_in_the_reference():
    page = reference()
    for path in sorted((REPO / "configs").glob("*.yaml")):
        config = load_config(path)
        keys = set(flatten(to_dict(config)))
        keys = {k for k in keys if not k.startswith(("sweep.grid.", "sweep.space."))} | (
            {f"sweep.{config.sweep.search == 'grid' and 'grid' or 'space'}"} if config.sweep else set())
        missing = sorted(k for k in keys if f"| `{k}` |" not in page)
        assert not missing, f"{path.name}: {missing}"
    assert all(f"## `kind: {name}`" in page for name in kinds.names())


def test_the_readmes_relative_links_and_pictures_exist():
    text = (REPO / "README.md").read_text()
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    targets = [t.split("#")[0] for t in links if "://" not in t and not t.startswith("#")]
    assert targets, "the README links to nothing"
    missing = [t for t in targets if not (REPO / t).exists()]
    assert not missing
