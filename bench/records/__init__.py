"""The data contract: both record files, their schema versions, file names, the fields that make a study's identity,
time to accuracy. Imports neither torch nor matplotlib, so every reader is fast.
"""
