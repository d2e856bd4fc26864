"""The comparison report. Modules: ``study_report`` (records -> the report's files, written to the store),
``tables`` (pure pandas tables), ``comparability`` and ``statistics`` (what may be compared, what a table pools),
``summary`` (the answer first), ``plots`` (PNG figures), ``document`` (content and order), ``render``
(self-contained HTML and Markdown), ``compare`` (two runs side by side), ``search`` (the search report),
``ensemble`` (averaged probabilities).
"""
from orchestrator.report.study_report import (REPORT_FILES, SYNTHETIC_NOTE, build_report,  # noqa: F401  (public)
                                              environment_info, write_report)
