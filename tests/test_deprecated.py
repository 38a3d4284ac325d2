"""psample 0.1 names keep working for one release, each with a DeprecationWarning naming the new one."""

import importlib
import sys

import networkx as nx
import pytest

import psample
import psample.graphs
import psample.smc
from psample._deprecated import MOVED_MODULES


@pytest.mark.parametrize("old", sorted(MOVED_MODULES))
def test_a_moved_module_imports_under_its_old_path_with_a_warning(old):
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=f"{old} moved to {MOVED_MODULES[old]}"):
        module = importlib.import_module(old)
    assert module is importlib.import_module(MOVED_MODULES[old])


def test_an_old_module_attribute_warns():
    psample.__dict__.pop("adaptation", None)  # an import of psample.adaptation sets the attribute
    with pytest.warns(DeprecationWarning, match="psample.adaptation moved to psample.runtime.warmup"):
        assert psample.adaptation.warmup is importlib.import_module("psample.runtime.warmup").warmup


def test_the_warning_points_at_the_importing_line():
    sys.modules.pop("psample.run", None)
    psample.__dict__.pop("run", None)
    with pytest.warns(DeprecationWarning, match="psample.run moved") as record:
        exec(compile("\n\nimport psample.run", "user_script.py", "exec"), {})
    assert (record[0].filename, record[0].lineno) == ("user_script.py", 3)


def test_modules_are_modules_again():
    import psample.graphs.glauber as glauber_module
    import psample.smc.tempered as tempered_module

    assert hasattr(tempered_module, "as_top_level_api") and hasattr(glauber_module, "build_kernel")
    assert psample.smc.tempered_smc is tempered_module.as_top_level_api
    assert psample.graphs.glauber_chain is glauber_module.as_top_level_api


def test_calling_a_module_the_old_way_warns_and_builds_the_same_sampler():
    network = psample.graphs.as_network(nx.complete_graph(4))
    motif = psample.graphs.Motif.path(2)
    with pytest.warns(DeprecationWarning, match=r"psample.graphs.glauber_chain"):
        old = psample.graphs.glauber(network, motif)
    new = psample.graphs.glauber_chain(network, motif)
    assert type(old) is type(new) and old._fields == new._fields
    with pytest.warns(DeprecationWarning, match=r"psample.graphs.pivot_chain"):
        psample.graphs.pivot(network, motif)
    # The call reaches the new constructor (which then refuses the missing arguments).
    with pytest.warns(DeprecationWarning, match=r"psample.smc.tempered_smc"), pytest.raises(TypeError):
        psample.smc.tempered()
    with pytest.warns(DeprecationWarning, match=r"psample.smc.fkc_smc"), pytest.raises(TypeError):
        psample.smc.fkc()


def test_diffusion_schedules_keep_their_names():
    assert psample.diffusion.VP is importlib.import_module("psample.schedules").VP
    assert psample.diffusion.reverse_diffusion is importlib.import_module("psample.diffusion.reverse").reverse_diffusion
