"""Every scikit-learn import that is not public API, in one place.

A scikit-learn release that moves one of these is then a one-file fix.
"""

from sklearn.utils._param_validation import Hidden, Interval, StrOptions
from sklearn.utils._set_output import _get_output_config
from sklearn.utils.validation import _check_feature_names_in, validate_data

__all__ = [
    "Hidden",
    "Interval",
    "StrOptions",
    "_check_feature_names_in",
    "_get_output_config",
    "validate_data",
]
