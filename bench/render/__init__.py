"""How a study reads: the summary table, the plots, the self-contained report.html.
"""
