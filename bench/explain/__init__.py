"""Why it scaled as it did: the scaling model, the verdicts, the noise rules. Pure: numbers in, numbers and words
out.
"""
