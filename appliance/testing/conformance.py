"""A conformance suite every backend plugin must pass, for built-in and third-party ones.

A plugin author subclasses :class:`BackendConformanceTests` in a test module (the class
name must start with ``Test`` so pytest collects it) and gives it a ``conformance_case``
fixture returning a :class:`ConformanceCase`: the backend, a model file it loads, inputs
for any batch size and a numpy reference of what the model computes. Every ``test_*``
method of the base class then runs against that case::

    # tests/test_conformance.py of a plugin "appliance-toy" with a backend for ".toy" files
    import numpy as np
    import pytest
    from appliance_toy import ToyBackend, write_toy_doubler

    from appliance.testing.conformance import BackendConformanceTests, ConformanceCase


    def toy_inputs(batch: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(0)  # fixed seed: the same batch gives the same inputs
        return {"x": rng.standard_normal((batch, 4)).astype(np.float32)}


    class TestToyBackend(BackendConformanceTests):
        @pytest.fixture(scope="class")  # built once for all the tests of the class
        @classmethod  # pytest 9: a class-scoped fixture method must be a classmethod
        def conformance_case(cls, tmp_path_factory: pytest.TempPathFactory) -> ConformanceCase:
            path = write_toy_doubler(tmp_path_factory.mktemp("toy") / "doubler.toy")
            return ConformanceCase(
                backend=ToyBackend(), model_path=path, format="toy",
                inputs=toy_inputs, reference=lambda feed: {"y": feed["x"] * 2},
                atol=1e-6, rtol=0.0, options={})

A backend for a built-in format can reuse the suite's models instead of writing its own,
e.g. ``appliance.testing.conformance_cases.onnx_linear_case(tmp_path_factory.mktemp("m"),
MyOnnxBackend())``.

What the suite checks (one test each):

* ``availability()`` returns an :class:`Availability` with a reason when unavailable
  and the devices found when available (the other tests skip when unavailable);
* the loaded model's signature: named, unique, protocol-typed tensors the case's inputs fit;
* ``metadata()`` names the backend and the device and encodes as JSON;
* ``predict`` agrees with the reference at batch 4, does not modify its inputs, and its
  results stay valid after the next ``predict`` (no views into runtime buffers);
* a dynamic batch dimension: batches 1, 7, 64 and back to 1 (skipped for
  ``fixed_batch`` models);
* 8 threads x 20 ``predict`` calls at once, each result checked against the reference;
* ``close()``: idempotent; another model of the same backend keeps working and the
  backend still loads; the backend keeps no reference to the closed model (it is
  garbage-collected once dropped); and ``close()`` itself releases the runtime objects
  the model owned. "Runtime objects" are those reachable from the model whose class
  comes neither from the standard library, numpy, appliance nor the plugin's own
  package (the session, compiled model or interpreter); one that is collected when the
  model is dropped but survived ``close()`` is a leak-while-referenced. Objects shared
  with anything else (a Core held by the backend) are never collected and so never
  blamed. The suite does not call ``predict`` after ``close()``: the interface says the
  object is not used afterwards, and a pooled backend may block rather than raise;
* a corrupt file (random bytes) and truncated files (empty, half, last 16 bytes
  missing), written with the model's suffix, raise :class:`InvalidModelFile` whose
  message names the file and is at most 1000 characters. Files beside the model with
  the same stem (an IR's ``.bin``) are copied intact, so only the primary file is bad.
"""

from __future__ import annotations

import contextlib
import gc
import shutil
import sys
import threading
import types
import weakref
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest

from appliance.backend import Availability, Backend, LoadedModel, ModelSource
from appliance.errors import InvalidModelFile
from appliance.signature import DATATYPES, TensorSpec, numpy_to_datatype

__all__ = [
    "BackendConformance",
    "BackendConformanceTests",
    "ConformanceCase",
    "assert_outputs",
]

Feed = dict[str, np.ndarray]


@dataclass
class ConformanceCase:
    """One backend plus one model it loads, and what the model must compute.

    ``inputs(batch)`` returns the input arrays for a batch size, the same ones every
    call (use a fixed seed); ``reference(inputs)`` returns the expected outputs by name
    (all of them or a subset), compared with ``atol``/``rtol``. ``options`` are the load
    options. ``fixed_batch`` is the batch size of a model without a dynamic batch
    dimension: the suite then always asks for that size and skips the variable-batch test.
    """

    backend: Backend
    model_path: Path
    format: str
    inputs: Callable[[int], Feed]
    reference: Callable[[Feed], Feed]
    atol: float
    rtol: float
    options: dict[str, Any] = field(default_factory=dict)
    fixed_batch: int | None = None

    def load(self) -> LoadedModel:
        """Load the case's model with its backend and options."""
        return self.backend.load(ModelSource(Path(self.model_path), self.format),
                                 options=self.options)

    def batch(self, wanted: int) -> int:
        """``wanted``, or the fixed batch size of a model without a dynamic batch."""
        return self.fixed_batch if self.fixed_batch is not None else wanted


def assert_outputs(model: LoadedModel, got: Mapping[str, np.ndarray], want: Feed,
                   case: ConformanceCase, context: str = "") -> None:
    """``got`` has exactly the model's outputs, typed and shaped as its signature says,
    and agrees with ``want`` within the case's tolerances."""
    names = [s.name for s in model.outputs]
    assert sorted(got) == sorted(names), f"{context}predict returned {sorted(got)}, " \
                                         f"the signature declares outputs {sorted(names)}"
    for spec in model.outputs:
        array = got[spec.name]
        assert isinstance(array, np.ndarray), \
            f"{context}output {spec.name!r} is a {type(array).__name__}, not a numpy array"
        kind = numpy_to_datatype(array.dtype)
        assert kind == spec.datatype, \
            f"{context}output {spec.name!r} is {kind}, the signature says {spec.datatype}"
        assert spec.accepts_shape(array.shape), \
            f"{context}output {spec.name!r} has shape {array.shape}, the signature {spec.shape}"
    for name, expected in want.items():
        np.testing.assert_allclose(got[name], expected, rtol=case.rtol, atol=case.atol,
                                   err_msg=f"{context}output {name!r} differs from reference")


def _rows(feed: Feed, start: int, stop: int) -> Feed:
    return {name: array[start:stop] for name, array in feed.items()}


# -- close(): which runtime objects does a loaded model own? ---------------------------

_NOT_RUNTIME = frozenset(sys.stdlib_module_names) | {"builtins", "numpy", "appliance",
                                                     "msgspec", "pluggy", "ml_dtypes"}
_DO_NOT_FOLLOW = (type, types.ModuleType, types.FunctionType, types.CodeType,
                  types.FrameType)


def _runtime_objects(model: LoadedModel, backend: Backend,
                     limit: int = 20000) -> list[tuple[weakref.ref[Any], str]]:
    """Weak references to the runtime objects reachable from ``model`` (see the module
    docstring), each with a label for messages. Holds no strong reference on return."""
    own = {type(model).__module__.split(".")[0], type(backend).__module__.split(".")[0]}
    seen: set[int] = {id(model), id(backend)}
    frontier: list[Any] = [model]
    found: list[tuple[weakref.ref[Any], str]] = []
    while frontier and len(seen) < limit:
        following: list[Any] = []
        for obj in frontier:
            for ref in gc.get_referents(obj):
                if id(ref) in seen or isinstance(ref, _DO_NOT_FOLLOW):
                    continue
                seen.add(id(ref))
                following.append(ref)
                module = type(ref).__module__.split(".")[0]
                if module in _NOT_RUNTIME or module in own:
                    continue
                with contextlib.suppress(TypeError):  # not weak-referenceable: unchecked
                    found.append((weakref.ref(ref), f"{type(ref).__module__}."
                                                    f"{type(ref).__qualname__}"))
        frontier = following
    return found


class BackendConformanceTests:
    """The conformance tests; subclass as ``Test<Name>`` and define ``conformance_case``."""

    @pytest.fixture
    def conformance_case(self) -> ConformanceCase:
        pytest.fail(f"{type(self).__name__} must define a 'conformance_case' fixture "
                    "returning an appliance.testing.conformance.ConformanceCase")

    @pytest.fixture
    def available_case(self, conformance_case: ConformanceCase) -> ConformanceCase:
        """The case, or a skip when its backend cannot run on this machine."""
        avail = conformance_case.backend.availability()
        if not avail.available:
            pytest.skip(f"backend {conformance_case.backend.name!r} is unavailable: "
                        f"{avail.reason}")
        return conformance_case

    @pytest.fixture
    def conformance_model(self, available_case: ConformanceCase) -> Iterator[LoadedModel]:
        """The case's model, loaded for one test and closed after it."""
        model = available_case.load()
        yield model
        model.close()

    def test_availability_reports_a_reason_when_unavailable_or_devices_when_available(
            self, conformance_case: ConformanceCase) -> None:
        backend = conformance_case.backend
        assert backend.name, f"{type(backend).__name__}.name is empty"
        assert conformance_case.format in backend.formats, \
            f"backend {backend.name!r} declares formats {backend.formats}, " \
            f"not the case's {conformance_case.format!r}"
        avail = backend.availability()
        assert isinstance(avail, Availability), \
            f"availability() returned {type(avail).__name__}, not Availability"
        if avail.available:
            assert avail.devices, f"{backend.name} is available but lists no device"
            assert all(isinstance(d, str) and d for d in avail.devices), avail.devices
        else:
            assert isinstance(avail.reason, str) and avail.reason.strip(), \
                f"{backend.name} is unavailable without saying why"
        assert backend.availability() == avail, "availability() changed between two calls"

    def test_load_exposes_named_signature(self, available_case: ConformanceCase,
                                          conformance_model: LoadedModel) -> None:
        for kind, specs in (("inputs", conformance_model.inputs),
                            ("outputs", conformance_model.outputs)):
            assert specs and all(isinstance(s, TensorSpec) for s in specs), \
                f"model.{kind} must be a non-empty list of TensorSpec, not {specs!r}"
            names = [s.name for s in specs]
            assert all(names) and len(set(names)) == len(names), \
                f"model.{kind} names must be non-empty and unique: {names}"
            for spec in specs:
                assert spec.datatype in DATATYPES, f"{spec.name}: unknown datatype"
        feed = available_case.inputs(available_case.batch(4))
        assert sorted(feed) == sorted(s.name for s in conformance_model.inputs), \
            f"the case feeds {sorted(feed)}, the model takes " \
            f"{[s.name for s in conformance_model.inputs]}"
        for spec in conformance_model.inputs:
            array = feed[spec.name]
            assert numpy_to_datatype(array.dtype) == spec.datatype and \
                spec.accepts_shape(array.shape), \
                f"input {spec.name!r} {spec.datatype} {spec.shape} does not accept the " \
                f"case's {array.dtype} {array.shape}"

    def test_metadata_names_backend_and_device(self, available_case: ConformanceCase,
                                               conformance_model: LoadedModel) -> None:
        meta = conformance_model.metadata()
        assert isinstance(meta, dict), f"metadata() returned {type(meta).__name__}"
        assert meta.get("backend") == available_case.backend.name, \
            f"metadata()['backend'] is {meta.get('backend')!r}, " \
            f"not {available_case.backend.name!r}"
        device = meta.get("device")
        assert isinstance(device, str) and device, f"metadata()['device'] is {device!r}"
        msgspec.json.encode(meta)  # it is served in the model's metadata response

    def test_predict_matches_reference(self, available_case: ConformanceCase,
                                       conformance_model: LoadedModel) -> None:
        case = available_case
        feed = case.inputs(case.batch(4))
        pristine = {name: array.copy() for name, array in feed.items()}
        got = conformance_model.predict(feed)
        want = case.reference(pristine)
        assert_outputs(conformance_model, got, want, case)
        for name, array in feed.items():
            assert np.array_equal(array, pristine[name]), f"predict modified input {name!r}"
        # The results must stay valid once the runtime runs again.
        other = {name: np.flip(array, -1).copy() if array.ndim else array
                 for name, array in pristine.items()}
        assert_outputs(conformance_model, conformance_model.predict(other),
                       case.reference(other), case, "second predict: ")
        assert_outputs(conformance_model, got, want, case, "after a second predict: ")

    def test_variable_batch_dimension(self, available_case: ConformanceCase,
                                      conformance_model: LoadedModel) -> None:
        case = available_case
        if case.fixed_batch is not None:
            pytest.skip(f"the model's batch is fixed at {case.fixed_batch}")
        for spec in conformance_model.inputs:
            assert spec.shape and spec.shape[0] == -1, \
                f"input {spec.name!r} declares shape {spec.shape}: no dynamic batch (-1)"
        for batch in (1, 7, 64, 1):
            feed = case.inputs(batch)
            got = conformance_model.predict(feed)
            for name, array in got.items():
                assert array.shape[0] == batch, \
                    f"batch {batch}: output {name!r} has shape {array.shape}"
            assert_outputs(conformance_model, got, case.reference(feed), case,
                           f"batch {batch}: ")

    def test_concurrent_predicts_from_threads(self, available_case: ConformanceCase,
                                              conformance_model: LoadedModel) -> None:
        case, threads, calls = available_case, 8, 20
        if case.fixed_batch is None:  # each thread its own rows and batch size (1..4)
            pool = case.inputs(threads + 4)
            feeds = [_rows(pool, t, t + 1 + t % 4) for t in range(threads)]
        else:
            feeds = [case.inputs(case.fixed_batch)] * threads
        wants = [case.reference(feed) for feed in feeds]
        barrier = threading.Barrier(threads)

        def worker(t: int) -> int:
            barrier.wait(timeout=30)
            for call in range(calls):
                assert_outputs(conformance_model, conformance_model.predict(feeds[t]),
                               wants[t], case, f"thread {t} call {call}: ")
            return calls

        with ThreadPoolExecutor(threads) as executor:
            done = [f.result(timeout=60) for f in
                    [executor.submit(worker, t) for t in range(threads)]]
        assert sum(done) == threads * calls

    def test_close_frees_the_model(self, available_case: ConformanceCase) -> None:
        case = available_case
        feed = case.inputs(case.batch(2))
        want = case.reference(feed)
        model, other = case.load(), case.load()
        model.predict(feed)
        runtime = _runtime_objects(model, case.backend)
        model_ref = weakref.ref(model)
        model.close()
        model.close()  # idempotent
        gc.collect()
        survived_close = [(ref, label) for ref, label in runtime if ref() is not None]
        del model
        gc.collect()
        assert model_ref() is None, \
            "the closed model is still referenced after it was dropped (by the backend?)"
        kept = sorted({label for ref, label in survived_close if ref() is None})
        assert not kept, f"close() kept runtime objects the model owned: {kept}"
        assert_outputs(other, other.predict(feed), want, case, "another model after close: ")
        other.close()
        again = case.load()
        assert_outputs(again, again.predict(feed), want, case, "a load after close: ")
        again.close()

    def test_corrupt_file_gives_clear_error(self, available_case: ConformanceCase,
                                            tmp_path: Path) -> None:
        garbage = np.random.default_rng(0).bytes(4096)
        self._assert_invalid(available_case, tmp_path, "conformance-corrupt", garbage)

    @pytest.mark.parametrize("keep", ["none", "half", "all-but-16"])
    def test_truncated_file_gives_clear_error(self, available_case: ConformanceCase,
                                              tmp_path: Path, keep: str) -> None:
        data = Path(available_case.model_path).read_bytes()
        size = {"none": 0, "half": len(data) // 2, "all-but-16": len(data) - 16}[keep]
        self._assert_invalid(available_case, tmp_path, f"conformance-truncated-{keep}",
                             data[:max(size, 0)])

    @staticmethod
    def _assert_invalid(case: ConformanceCase, directory: Path, stem: str,
                        content: bytes) -> None:
        """Write ``content`` as ``stem`` + the model's suffix (siblings copied intact)
        and check loading it raises a short InvalidModelFile naming the file."""
        original = Path(case.model_path)
        for sibling in original.parent.glob(f"{original.stem}.*"):
            if sibling != original and sibling.is_file():
                shutil.copyfile(sibling, directory / f"{stem}{sibling.suffix}")
        bad = directory / f"{stem}{original.suffix}"
        bad.write_bytes(content)
        with pytest.raises(InvalidModelFile) as info:
            case.backend.load(ModelSource(bad, case.format), options=case.options)
        message = str(info.value)
        assert bad.name in message, f"the error does not name {bad.name}: {message!r}"
        assert len(message) <= 1000, f"the error is {len(message)} characters long"


#: The name the suite is also known by.
BackendConformance = BackendConformanceTests
