"""The harness's one-line errors about configuration (data errors live with the data: image_arrays.DataError)."""


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field and reads as one line."""
