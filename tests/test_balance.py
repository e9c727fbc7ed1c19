import pandas as pd
import pytest

from facelab.data import balance
from facelab.data import plots as data_plots


def _m(sizes=(50, 250, 120)):
    rows = [{"person": f"p{c}", "path": f"/x/{c}/{i}.jpg", "split": "train"}
            for c, n in enumerate(sizes) for i in range(n)]
    return pd.DataFrame(rows)


def test_report():
    r = balance.report(_m())
    assert r.ratio == 5.0
    assert r.counts.index[0] == "p1"
    assert r.majority_share == pytest.approx(250 / 420)
    assert "imbalance ratio 5.00" in str(r)
    with pytest.raises(ValueError, match="no rows"):
        balance.report(_m(), split="test")


def test_undersample_and_oversample():
    m = _m()
    u = balance.undersample(m, seed=0)
    assert balance.class_counts(u).tolist() == [50, 50, 50]
    assert balance.class_counts(balance.undersample(m, k=100)).to_dict() == \
        {"p1": 100, "p2": 100, "p0": 50}
    o = balance.oversample(m, seed=0)
    assert balance.class_counts(o).tolist() == [250, 250, 250]
    assert set(o["path"]) == set(m["path"])                     # nothing dropped
    assert o[o["person"] == "p2"]["path"].value_counts().max() == 3   # 250 = 2*120 + 10
    assert balance.imbalance_ratio(balance.class_counts(o)) == 1.0


def test_class_weights_equalise_loss_mass():
    m = _m()
    w = balance.class_weights(m)
    assert w[1] == pytest.approx(420 / (3 * 250))
    mass = balance.sampled_counts(m, "weights")
    assert mass.max() == pytest.approx(mass.min())
    s = balance.sampled_counts(m, "sample", n=30000)
    assert (s / 10000 - 1).abs().max() < 0.05
    with pytest.raises(ValueError, match="unknown strategy"):
        balance.sampled_counts(m, "smote")


def test_plot_counts():
    m = _m()
    fig = data_plots.plot_counts({s: balance.sampled_counts(m, s) for s in
                               ("none", "undersample", "oversample", "weights", "sample")})
    assert len(fig.axes) == 5
