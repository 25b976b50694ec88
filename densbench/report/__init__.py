"""Reports from stored results: tables (pandas) and rendered documents."""

from densbench.report.render import write_markdown
from densbench.report.tables import aggregate_seeds, leaderboards, summary_table

__all__ = ["aggregate_seeds", "leaderboards", "summary_table", "write_markdown"]
