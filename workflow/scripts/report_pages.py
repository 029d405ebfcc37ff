"""Rule report_pages: HTML pages that show the motion GIFs, the tables and the provenance
inline in the Snakemake report (which offers them only as downloads otherwise).

Calls flexcore.core.utils.report_pages.write_report_page for every named input/output pair.
"""

import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)

from flexcore.core.utils.report_pages import write_report_page

for name, title in snakemake.params.titles.items():
    write_report_page(snakemake.input[name], snakemake.output[name], title)
