"""The names of the files a study writes into its --out folder: one definition each."""

RESULTS_FILE = "results.jsonl"
"""One record per configuration-trial (bench.records.results)."""
COMM_FILE = "comm.jsonl"
"""One record per device count of the collective benchmark (bench.records.comm)."""
SUMMARY_FILE = "summary.md"
REPORT_FILE = "report.html"
PROFILE_FILE = "profile.md"
HANDOFF_DIR = ".handoff"
"""Where children hand their result (and failure) files back to the parent; a sweep's children name it on their
command line, which is how leftover processes of an earlier sweep are recognised."""
LOGS_DIR = "logs"
"""Each launch's full output, <label>-trial<T>.log."""
