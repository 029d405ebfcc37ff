"""The report's HTML pages: motion GIFs, tables and provenance shown inline in the Snakemake
report."""
