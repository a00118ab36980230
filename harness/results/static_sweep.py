"""The static-weight control: ``L = L_fine + w * L_coarse`` with a fixed ``w``, swept over a grid
(the baselines ``fine_only``, ``static_coarse_*`` and ``equal_weighting``), and the leaderboard's two
lines made of it.

Kurin et al. (2022) and Xin et al. (2022) found that specialised multi-task optimisers rarely beat
plain scalarization (a fixed weighted sum of the losses) once it is tuned as carefully; Xin et al.
sweep the static weights. So every entry is tested against the *tuned static weight*: for each
seed, the weight with the best score on the other seeds (leave one seed out), scored on that seed
(:func:`harness.results.family.leave_one_seed_out`; the line is :data:`TUNED_LABEL`, built in
:mod:`harness.results.board`). The *best static weight* line (:func:`best_static`) is descriptive: per
architecture, the weight with the best mean on the very accuracies it shows, which flatters it; it
is not ranked and carries no test (a p-value after choosing on test would not mean what it says).
"""

from __future__ import annotations

import dataclasses

from harness.results.aggregate import DEFAULT_SETTINGS, ArchStats, Standing, score_of

# baseline file -> its coarse weight (the fine weight is 1); each file states it, tests check both agree
SWEEP: dict[str, float] = {
    "fine_only.py": 0.0,
    "static_coarse_0p1.py": 0.1,
    "static_coarse_0p3.py": 0.3,
    "static_coarse_0p5.py": 0.5,
    "equal_weighting.py": 1.0,
    "static_coarse_2.py": 2.0,
    "static_coarse_3.py": 3.0,
}
CONTROL_LABEL = "best static weight (chosen on test: optimistic)"
TUNED_LABEL = "tuned static weight (each seed: the best w on the other seeds)"


def sweep_members(entries: list[Standing]) -> dict[str, list[tuple[float, Standing]]]:
    """The measured sweep baselines by settings, in order of weight (the version each view ranks)."""
    out: dict[str, list[tuple[float, Standing]]] = {}
    for e in entries:
        if e.kind == "baseline" and e.submission in SWEEP and e.current:
            out.setdefault(e.settings, []).append((SWEEP[e.submission], e))
    return {k: sorted(v, key=lambda wv: wv[0]) for k, v in out.items()}


def best_static(entries: list[Standing]) -> list[Standing]:
    """One control line per settings with at least two sweep weights measured: on each architecture,
    the weight whose entry has the highest mean among those complete there (every protocol seed ok)."""
    lines = []
    for settings, members in sweep_members(entries).items():
        if len(members) < 2:
            continue
        archs, picked = {}, {}
        for arch in members[0][1].archs:
            complete = [(e.archs[arch].mean, w, e) for w, e in members if e.archs[arch].complete]
            if not complete:
                archs[arch] = ArchStats(n=0, failed=0, mean=None, std=None)
                picked[arch] = "no weight with every seed ok"
                continue
            _, w, e = max(complete, key=lambda c: (c[0], -c[1]))
            # the difference stays; no interval or test: after choosing on test they would overstate it
            archs[arch] = dataclasses.replace(e.archs[arch], p_value=None, ci=None, n_pairs=0, no_test="chosen on test")
            version = f" @{e.sha256[:8]}" if "@" in e.label else ""
            picked[arch] = f"w={w:g}{version}"
        label = CONTROL_LABEL + ("" if settings == DEFAULT_SETTINGS else f" [{settings}]")
        lines.append(
            Standing(
                label=label,
                kind="control",
                submission="",
                sha256="",
                archs=archs,
                score=score_of(archs),
                settings=settings,
                picked=picked,
            )
        )
    return lines
