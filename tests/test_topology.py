"""Seed 003's topologies as a protocol axis, through the command a user runs: the option reaches the
model, the row records it, the standings keep it apart, ``harness models`` counts the parameters,
and a re-run is numbered as the run's next attempt. (Exactness per topology: test_equivalence.)"""

from __future__ import annotations

import pytest
import torch
from helpers import harness, run_spec, tiny_profile

from harness.protocol import TOPOLOGIES
from harness.results import read_rows
from harness.training.models import build_model, count_parameters, shared_parameters


def test_topologies_build_the_networks_of_seed_003():
    x = torch.randn(4, 3, 32, 32)
    for topology in TOPOLOGIES:
        torch.manual_seed(0)
        model = build_model("resnet20", topology=topology).eval()
        fine, coarse = model(x)
        assert fine.shape == (4, 100) and coarse.shape == (4, 20)
        names = dict(model.named_parameters())
        assert ("coarse_backbone.body.0.weight" in names) == (not topology.startswith("shared")), topology
        # with reuse, the reading head takes the other head's 20 or 100 logits beside the 64 features
        assert names["fine_head.weight"].shape[1] == 64 + (20 if topology.endswith("reuse-coarse") else 0)
        assert names["coarse_head.weight"].shape[1] == 64 + (100 if topology.endswith("reuse-fine") else 0)
    # the task card's network initialises exactly as before topologies existed (the fine backbone and
    # the heads come first from the RNG)
    torch.manual_seed(0)
    a = build_model("resnet20")
    torch.manual_seed(0)
    b = build_model("resnet20", topology="independent")
    assert torch.equal(a.backbone.body[0].weight, b.backbone.body[0].weight)
    assert torch.equal(a.fine_head.weight, b.fine_head.weight)


@pytest.mark.slow
def test_what_both_tasks_reach_follows_the_topology():
    def reached(topology):
        torch.manual_seed(0)
        model = build_model("resnet20", topology=topology)
        names = [n for n, _ in model.named_parameters()]
        return {n.split(".")[0] for n, s in zip(names, shared_parameters(model)) if s}

    assert reached("shared") == {"backbone"}
    assert reached("independent") == set()
    assert reached("reuse-coarse") == {"coarse_backbone", "coarse_head"}  # the fine loss flows into them
    assert reached("reuse-fine") == {"backbone", "fine_head"}
    assert reached("shared-reuse-coarse") == {"backbone", "coarse_head"}
    # a reference independent of the trainer: the coarse head's output feeds the fine head's input
    torch.manual_seed(0)
    model = build_model("resnet20", topology="shared-reuse-coarse").eval()
    fine, _ = model(torch.randn(2, 3, 32, 32))
    assert model.coarse_head.weight in {
        p
        for p, g in zip(
            model.parameters(), torch.autograd.grad(fine.sum(), list(model.parameters()), allow_unused=True)
        )
        if g is not None
    }


@pytest.mark.slow
def test_models_lists_parameter_counts(tmp_path):
    r = harness("models", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    torch.manual_seed(0)
    independent = count_parameters(build_model("resnet56", topology="independent").parameters())
    assert f"{independent:,}" in r.stdout and "none: G over all" in r.stdout
    assert all(t in r.stdout for t in TOPOLOGIES)


@pytest.mark.slow
def test_evaluate_with_a_topology_records_it_and_keeps_it_apart(tmp_path):
    lb = tmp_path / "lb.csv"
    common = ("--profile", "tiny", "--sandbox", "none", "--leaderboard", lb, "--runs-dir", tmp_path / "runs")
    r = harness("baselines", "--only", "equal_weighting", "--topology", "reuse-coarse", *common, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    # what the Gramian would cover: the coarse network, which the fine loss reaches through the reused logits
    backbone = count_parameters(build_model("resnet20").backbone.parameters())
    coarse_net = backbone + 64 * 20 + 20
    total = 2 * backbone + (64 + 20) * 100 + 100 + 64 * 20 + 20
    assert f"both tasks reach {coarse_net:,} of its {total:,} parameters" in r.stdout, r.stdout
    r = harness("baselines", "--only", "equal_weighting", *common, cwd=tmp_path)  # the shared topology
    assert r.returncode == 0 and "nothing to run" not in r.stdout, r.stdout  # another run, not a repeat
    r = harness(
        "baselines", "--only", "equal_weighting", "--topology", "reuse-coarse", "--force", *common, cwd=tmp_path
    )
    assert r.returncode == 0, r.stdout + r.stderr
    rows = read_rows(lb)
    assert rows["topology"].tolist() == ["reuse-coarse", "shared", "reuse-coarse"]
    assert rows["attempt"].tolist() == [1, 1, 2]  # --force: the reuse-coarse run's second attempt
    r = harness("leaderboard", "--leaderboard", lb, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "equal_weighting.py [fp32 reuse-coarse]" in r.stdout  # its own entry, beside the shared one


@pytest.mark.slow
def test_runs_with_other_settings_have_their_own_directories(tmp_path):
    """A topology (or precision) run never shares a checkpoint, a pending row or a metrics file with
    the shared run of the same architecture and seed."""
    from harness.protocol import EntryKey
    from harness.results.rundir import EvalDir

    eval_dir = EvalDir.of(tmp_path, "tiny", EntryKey(kind="submission", name="loss.py"), "ab" * 32)
    spec = run_spec(tiny_profile())
    shared = eval_dir.run(spec)
    assert shared.path.name == "resnet20-seed42"  # the protocol's own settings: the name runs always had
    others = {
        eval_dir.run(spec.model_copy(update=u)).path
        for u in ({"topology": "independent"}, {"precision": "bf16"}, {"compile": True}, {"deterministic": True})
    }
    assert len(others) == 4 and shared.path not in others
    assert (
        eval_dir.run(spec.model_copy(update={"topology": "reuse-fine", "precision": "fp64"})).path.name
        == "resnet20-seed42-reuse-fine-fp64"
    )
