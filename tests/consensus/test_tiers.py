import json
from pathlib import Path

import pytest

from nnunet_cdl.consensus.tiers import (
    ConsensusConfig,
    Thresholds,
    assign_tier,
    assign_tiers,
    load_config,
    quantile_thresholds,
)
from nnunet_cdl.errors import CdlError


def test_packaged_config_holds_the_paper_thresholds() -> None:
    config = load_config()
    assert config.thresholds == Thresholds(0.90, 0.80)
    assert config.ds_mode == "trusted" and config.tier_mode == "fixed" and config.refine == "trusted-vote"
    assert config.trust_margin == 0.1


def test_fixed_tiers_boundaries() -> None:
    t = Thresholds(0.9, 0.8)
    assert assign_tier(0.9, t) == "easy"
    assert assign_tier(0.8999, t) == "hard"
    assert assign_tier(0.8, t) == "hard"
    assert assign_tier(0.79, t) == "erroneous"


def test_quantile_mode_splits_by_rank() -> None:
    ds = {f"c{i}": i / 10 for i in range(11)}  # 0.0 .. 1.0
    config = load_config().with_overrides(tier_mode="quantile", quantiles_easy=0.5, quantiles_hard=0.2)
    tiers, thresholds = assign_tiers(ds, config)
    assert thresholds.easy == pytest.approx(0.5) and thresholds.hard == pytest.approx(0.2)
    assert [c for c, t in tiers.items() if t == "erroneous"] == ["c0", "c1"]
    assert sum(t == "easy" for t in tiers.values()) == 6
    assert quantile_thresholds([0.3], Thresholds(0.5, 0.1)) == Thresholds(0.3, 0.3)


def test_overrides_and_validation(tmp_path: Path) -> None:
    config = load_config().with_overrides(thresholds_easy=0.95, ds_mode="paper")
    assert config.thresholds == Thresholds(0.95, 0.80) and config.ds_mode == "paper"
    with pytest.raises(CdlError, match="hard <= easy"):
        load_config().with_overrides(thresholds_hard=0.97)
    with pytest.raises(CdlError, match="ds_mode"):
        load_config().with_overrides(ds_mode="mean")
    bad = tmp_path / "c.json"
    bad.write_text(json.dumps({"ds_mode": "others"}))
    with pytest.raises(CdlError, match=str(bad)):
        load_config(bad)
    assert isinstance(load_config(), ConsensusConfig)
    assert load_config().with_overrides(refine="vote").refine == "vote"
    assert load_config().with_overrides(refine="staple").refine == "staple"
    with pytest.raises(CdlError, match="refine"):
        load_config().with_overrides(refine="median")
    with pytest.raises(CdlError, match="trust_margin"):
        load_config().with_overrides(trust_margin=1.5)
    older = tmp_path / "older.json"  # settings files written before `refine` existed still load
    older.write_text(json.dumps({"ds_mode": "others", "tier_mode": "fixed", "thresholds": {"easy": 0.9, "hard": 0.8},
                                 "quantiles": {"easy": 0.5, "hard": 0.1}}))
    assert load_config(older).refine == "select" and load_config(older).trust_margin == 0.1
    older.write_text(json.dumps({**json.loads(older.read_text()), "refine": "vote"}))
    assert load_config(older).refine == "vote"
