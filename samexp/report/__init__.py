"""`python -m samexp.report <study, parent run or experiment>`: which adaptation works best, with
error bars, from the per-image figures a study's runs logged (samexp.report.stats says how)."""
