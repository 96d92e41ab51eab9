"""RapidOCR's answers remembered for a test session, by what it was shown and asked.

Many tests draw the same scenes, so the one OCR engine (the offline reader, the witnesses, the text detector) is
shown the same pixels again and again; the answer to the same pixels and options is the same. Remembering it keeps
the fast lane fast; every test still goes through the engine's seam (mosaic.offline.reader._ocr) as the product
does, and the first time a picture is shown the engine really looks at it."""

from __future__ import annotations

import copy
import hashlib
import threading

import numpy as np


class RememberingEngine:
    """Wraps a RapidOCR engine: called with an image array and options, it answers what the engine answered for the
    same array and options before, or asks the engine."""

    def __init__(self, engine):
        self.engine = engine
        self._answers: dict[str, tuple] = {}
        self._lock = threading.Lock()

    def __call__(self, image: np.ndarray, **options):
        key = hashlib.sha256(repr((image.shape, image.dtype.str, sorted(options.items()))).encode()
                             + np.ascontiguousarray(image).tobytes()).hexdigest()
        with self._lock:
            if key in self._answers:
                return copy.deepcopy(self._answers[key])
        answer = self.engine(image, **options)
        with self._lock:
            self._answers[key] = copy.deepcopy(answer)
        return answer


def remember_ocr_answers() -> None:
    """From now on in this process, the engines mosaic.offline.reader._ocr() gives remember their answers (each
    still made when first asked for)."""
    from mosaic.offline import reader

    make_engine, remembering = reader._ocr, {}

    def remembering_engine(at_own_size: bool = False) -> RememberingEngine:
        if at_own_size not in remembering:
            remembering[at_own_size] = RememberingEngine(make_engine(at_own_size))
        return remembering[at_own_size]

    reader._ocr = remembering_engine
