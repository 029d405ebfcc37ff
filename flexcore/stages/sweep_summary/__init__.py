"""The sweep's comparison table and plot (rule ``sweep_summary``)."""
