"""The run hands out its longest cells first: measured costs where the run folder has
them, else the prior (epochs x log dimension)."""

from densbench.runner.plan import Cell, Spec
from densbench.runner.schedule import expected_seconds, longest_first


def _record(cell: Cell, seconds: int, status: str = "ok") -> dict:
    return {**cell.to_dict(), "status": status, "started": "2026-12-02T01:00:00+00:00",
            "finished": f"2026-12-02T01:{seconds // 60:02d}:{seconds % 60:02d}+00:00"}


def test_the_prior_puts_trained_estimators_and_high_dimensions_first():
    cells = [Cell(Spec("gaussian"), Spec("banana"), 0),
             Cell(Spec("maf", {"max_epochs": 40}), Spec("banana"), 0),
             Cell(Spec("gaussian"), Spec("digits"), 0),
             Cell(Spec("maf", {"max_epochs": 40}), Spec("digits"), 0),
             Cell(Spec("made"), Spec("banana"), 0)]   # its default max_epochs
    order = [cells.index(c) for c in longest_first(cells)]
    assert order == [3, 4, 1, 2, 0] or order == [4, 3, 1, 2, 0]
    cost = expected_seconds(cells)
    assert cost[cells[3].id] == 40 * (1 + 6) and cost[cells[0].id] == 1 + 1


def test_measured_costs_of_any_seed_override_the_prior():
    slow = Cell(Spec("gaussian"), Spec("banana"), 1)
    fast = Cell(Spec("maf", {"max_epochs": 40}), Spec("banana"), 1)
    done = [_record(Cell(Spec("gaussian"), Spec("banana"), 0), 90),
            _record(Cell(Spec("maf", {"max_epochs": 40}), Spec("banana"), 0), 30),
            _record(Cell(Spec("maf", {"max_epochs": 40}), Spec("banana"), 2), 600, "failed")]
    assert longest_first([fast, slow], done) == [slow, fast]
    assert expected_seconds([fast], done)[fast.id] == 30.0  # the failed record is ignored


def test_an_estimators_epoch_cost_weighs_its_prior():
    """Twelve PixelCNN epochs outweigh a flow's 200-epoch budget at the same dimension (a
    PixelCNN epoch costs far more), so a run starts it first."""
    from densbench import estimators

    pixelcnn = Cell(Spec("pixelcnn", {"max_epochs": 12}), Spec("mnist5k"), 0)
    maf = Cell(Spec("maf", {"max_epochs": 200}), Spec("mnist5k"), 0)
    cost = expected_seconds([maf, pixelcnn])
    factor = type(estimators.make("pixelcnn")).epoch_cost
    assert factor > 1.0 and type(estimators.make("maf")).epoch_cost == 1.0
    assert cost[pixelcnn.id] == cost[maf.id] * 12 * factor / 200
    assert longest_first([maf, pixelcnn]) == [pixelcnn, maf]


def test_the_images_suite_starts_its_pixelcnn_cells_first():
    from densbench.runner.plan import builtin_suite

    order = [c.estimator.name for c in longest_first(builtin_suite("images").cells())]
    assert order[:2] == ["pixelcnn", "pixelcnn"]
