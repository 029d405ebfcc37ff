"""Rule report_pages: HTML pages that show the motion GIFs, the tables and the provenance
inline in the Snakemake report (which offers them only as downloads otherwise).

Calls flexcore.stages.report_pages.step.run_report_pages with the rule's named inputs and
outputs (one pair per page) and the pages' titles.
"""

import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)

from flexcore.cli.main import call_step
from flexcore.stages.report_pages.step import run_report_pages

call_step(
    run_report_pages,
    {name: snakemake.input[name] for name in snakemake.params.titles},
    {name: snakemake.output[name] for name in snakemake.params.titles},
    snakemake.params.titles,
)
