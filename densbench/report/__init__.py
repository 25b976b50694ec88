"""Reports from stored results: tables (pandas), figures and rendered documents."""

from densbench.report.render import write_report
from densbench.report.tables import aggregate_seeds, leaderboards, summary_table

__all__ = ["aggregate_seeds", "leaderboards", "summary_table", "write_report"]
