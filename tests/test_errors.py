"""Errors about one image of a batch carry its index as data, so callers never parse messages."""

from __future__ import annotations

import numpy as np
import pytest

from compressor import errors
from compressor.errors import CodeError, about_image


def _code_errors(cls=CodeError):
    yield cls
    for sub in cls.__subclasses__():
        yield from _code_errors(sub)


@pytest.mark.parametrize("cls", list(_code_errors()), ids=lambda c: c.__name__)
def test_an_error_said_of_an_image_keeps_its_class_and_text_and_carries_the_index(cls):
    told = about_image(cls("damaged data"), 7)
    assert type(told) is cls and str(told) == "image 7: damaged data"
    assert told.image == 7 and told.reason == "damaged data"


def test_an_error_said_of_no_image_has_no_index():
    plain = errors.CorruptCodeError("bad magic")
    assert plain.image is None and plain.reason is None


def test_a_numpy_index_is_stored_as_a_plain_int():
    told = about_image(errors.TruncatedCodeError("short"), np.int64(3))
    assert type(told.image) is int and str(told) == "image 3: short"
