"""How the run engine has Tune schedule an embedded run's trials (orchestrator.execution.engine)."""
from __future__ import annotations

import pytest

from orchestrator import Study
from tests.support.trainables import counting_pending_placement_groups


def _pending_seen(spec, out_dir) -> list[int]:
    out_dir.mkdir()
    outcome = Study(spec, trainable=counting_pending_placement_groups(str(out_dir))).run(
        show_progress=False, notify=lambda m: None)
    assert outcome.counts == {"completed": 8}, outcome.counts
    return [int(p.read_text()) for p in out_dir.iterdir()]


@pytest.mark.slow
def test_an_embedded_run_keeps_only_as_many_trials_pending_as_fit_at_once(ray_session, tiny_spec, tmp_path,
                                                                          monkeypatch):
    # 8 one-CPU trials on the session's 2 CPUs: Tune's default would request all 6 waiting trials' placement
    # groups at once (it keeps up to 200 pending, for an autoscaler to see)
    grid = {"architectures": ["cnn"], "epochs": list(range(1, 9))}
    seen = _pending_seen(tiny_spec(name="pending", grid=grid), tmp_path / "limited")
    assert len(seen) == 8 and max(seen) <= 2, seen

    monkeypatch.setenv("TUNE_MAX_PENDING_TRIALS_PG", "200")  # the user's own setting wins
    seen = _pending_seen(tiny_spec(name="pending-users", grid=grid), tmp_path / "users")
    assert max(seen) > 2, seen
